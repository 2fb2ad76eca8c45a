//! Every mistake in one policy, so that a file with several is fixed in one pass.

use std::fmt;

use super::{Location, PolicyError};

/// What is wrong with one policy (a file or the flags): at least one [`PolicyError`], in source
/// order (by line and column; flags in the order they were checked), each said once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyErrors {
    errors: Vec<PolicyError>,
}

impl PolicyErrors {
    /// Sorts `errors` into source order and drops repeats. `errors` must not be empty.
    pub(crate) fn new(mut errors: Vec<PolicyError>) -> Self {
        debug_assert!(!errors.is_empty(), "a policy rejected without an error");
        // A stable sort: flag locations keep the order they were checked in.
        errors.sort_by_key(|err| match err.location() {
            Location::Line { line, column } => (*line, *column),
            Location::Flag(_) => (0, 0),
        });
        errors.dedup();
        Self { errors }
    }

    /// The errors in source order; never empty.
    pub fn errors(&self) -> &[PolicyError] {
        &self.errors
    }

    /// The file (as named by the caller) or `command-line flags`.
    pub fn source_name(&self) -> &str {
        self.errors.first().map_or("", PolicyError::source_name)
    }
}

impl From<PolicyError> for PolicyErrors {
    fn from(err: PolicyError) -> Self {
        Self { errors: vec![err] }
    }
}

/// One error as itself; several as `N errors in FILE:` and one error a line, indented.
impl fmt::Display for PolicyErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.errors.as_slice() {
            [only] => write!(f, "{only}"),
            all => {
                write!(f, "{} errors in {}:", all.len(), self.source_name())?;
                all.iter().try_for_each(|err| write!(f, "\n  {err}"))
            }
        }
    }
}

impl std::error::Error for PolicyErrors {}
