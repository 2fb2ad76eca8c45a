//! Log lines go where the run that caused them logs. The command line sets a log sink for the
//! thread it runs on (its context's standard error); threads started for the run, such as an
//! async runtime's workers, would otherwise log to the process's default sink, which a test
//! running several commands in one process does not have.

use std::cell::RefCell;

use tracing::dispatcher::{self, DefaultGuard, Dispatch};

thread_local! {
    /// The sink a runtime thread took over from its creator, kept for the thread's life.
    static INHERITED: RefCell<Option<DefaultGuard>> = const { RefCell::new(None) };
}

/// Where the calling thread logs now.
pub(crate) fn current() -> Dispatch {
    dispatcher::get_default(Dispatch::clone)
}

/// Makes the threads of the runtime `builder` builds log where the calling thread logs now.
pub(crate) fn inherit(builder: &mut tokio::runtime::Builder) -> &mut tokio::runtime::Builder {
    let sink = current();
    builder.on_thread_start(move || {
        let guard = dispatcher::set_default(&sink);
        INHERITED.with(|slot| *slot.borrow_mut() = Some(guard));
    })
}
