//! A small located YAML tree: every node remembers where it was written, so that validation
//! errors about valid YAML with invalid content ("unknown key `tag`", "bad glob") can still point
//! at a line and column. serde-based deserialisation loses positions inside untagged enums and
//! turns plain scalars such as `1.10` into numbers; reading parser events ourselves avoids both.
//!
//! The same tree is built from command-line flags (positions are then flag names), so flags and
//! files go through one validation path and mean exactly the same thing.

use std::borrow::Cow;
use std::collections::HashMap;

use serde_saphyr::granit_parser::{Event, Options, Parser, ScalarStyle, Span, StrInput};

type StrParser<'a> = Parser<'a, StrInput<'a>>;

use super::{Location, PolicyError};

/// More nodes than any sensible policy has; stops alias bombs (`&a [*a, *a, …]` nested) early.
const MAX_NODES: usize = 100_000;

#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub kind: Kind,
    pub at: Location,
}

#[derive(Debug, Clone)]
pub(crate) enum Kind {
    /// A scalar's text after escape processing; `plain` is false for quoted and block scalars,
    /// which are always strings in YAML's core schema (`"true"` is not a boolean).
    Scalar {
        text: String,
        plain: bool,
    },
    Seq(Vec<Node>),
    Map(Vec<(Key, Node)>),
}

#[derive(Debug, Clone)]
pub(crate) struct Key {
    pub text: String,
    pub at: Location,
}

impl Node {
    pub fn scalar(text: impl Into<String>, at: Location) -> Self {
        Self {
            kind: Kind::Scalar {
                text: text.into(),
                plain: false,
            },
            at,
        }
    }

    /// A plain (unquoted) scalar, as a number or boolean would be written.
    pub fn plain(text: impl Into<String>, at: Location) -> Self {
        Self {
            kind: Kind::Scalar {
                text: text.into(),
                plain: true,
            },
            at,
        }
    }

    pub fn seq(items: Vec<Node>, at: Location) -> Self {
        Self {
            kind: Kind::Seq(items),
            at,
        }
    }

    pub fn map(entries: Vec<(&'static str, Node)>, at: Location) -> Self {
        let entries = entries
            .into_iter()
            .map(|(key, value)| {
                let key = Key {
                    text: key.to_owned(),
                    at: value.at.clone(),
                };
                (key, value)
            })
            .collect();
        Self {
            kind: Kind::Map(entries),
            at,
        }
    }

    /// YAML's core-schema null: an empty plain scalar, `~` or `null`.
    pub fn is_null(&self) -> bool {
        matches!(&self.kind, Kind::Scalar { text, plain: true } if matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL"))
    }

    /// What this node is, for "found …" in error messages.
    pub fn describe(&self) -> Cow<'static, str> {
        match &self.kind {
            _ if self.is_null() => "nothing (null)".into(),
            Kind::Scalar { text, .. } => format!("`{}`", shorten(text)).into(),
            Kind::Seq(_) => "a list".into(),
            Kind::Map(_) => "a mapping".into(),
        }
    }
}

fn shorten(text: &str) -> Cow<'_, str> {
    const MAX: usize = 60;
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &text[..cut]).into(),
        None => text.into(),
    }
}

fn at(span: &Span) -> Location {
    // granit's lines are 1-based and its columns 0-based; editors show both 1-based.
    Location::Line {
        line: span.start.line(),
        column: span.start.col() + 1,
    }
}

/// Parses one YAML document into a located tree. `Ok(None)` for a document with no content.
pub(crate) fn parse(text: &str, source: &str) -> Result<Option<Node>, PolicyError> {
    let mut builder = Builder {
        source,
        anchors: HashMap::new(),
        nodes: 0,
        last: Location::Line { line: 1, column: 1 },
    };
    // Comments are not data; not emitting them also avoids the parser's limit on buffered
    // comment events (a long commented-out block would otherwise be an error).
    let mut options = Options::default();
    options.set_emit_comments(false);
    let mut parser = Parser::new_from_str_with_options(text, options);
    let mut root: Option<Node> = None;
    let mut documents = 0usize;
    while let Some(next) = parser.next_event() {
        let (event, span) = next.map_err(|err| scan_error(source, &err))?;
        match event {
            Event::DocumentStart(..) => {
                documents += 1;
                if documents > 1 {
                    return Err(PolicyError::new(
                        source,
                        at(&span),
                        "a second YAML document (`---`)",
                        "a single document: one policy per file",
                    ));
                }
            }
            Event::Scalar(..) | Event::SequenceStart(..) | Event::MappingStart(..) | Event::Alias(..) => {
                let node = builder.node(event, span, &mut parser)?;
                root = Some(node);
            }
            Event::StreamEnd => break,
            _ => {}
        }
    }
    Ok(root.filter(|node| !node.is_null()))
}

struct Builder<'s> {
    source: &'s str,
    anchors: HashMap<usize, Node>,
    nodes: usize,
    /// Where the last node started, for an error at the end of the input.
    last: Location,
}

impl Builder<'_> {
    fn count(&mut self, added: usize, span: &Span) -> Result<(), PolicyError> {
        self.nodes = self.nodes.saturating_add(added);
        if self.nodes > MAX_NODES {
            return Err(PolicyError::new(
                self.source,
                at(span),
                format!("the document has more than {MAX_NODES} nodes (aliases included)"),
                "a policy of reasonable size",
            ));
        }
        Ok(())
    }

    fn next<'a>(&self, parser: &mut StrParser<'a>) -> Result<(Event<'a>, Span), PolicyError> {
        loop {
            match parser.next_event() {
                Some(Ok((event, span))) => {
                    // Comments and anchor metadata are presentation, not data.
                    if event.is_node() || matches!(event, Event::SequenceEnd | Event::MappingEnd) {
                        return Ok((event, span));
                    }
                }
                Some(Err(err)) => return Err(scan_error(self.source, &err)),
                None => {
                    return Err(PolicyError::new(
                        self.source,
                        self.last.clone(),
                        "the document ended early",
                        "valid YAML",
                    ));
                }
            }
        }
    }

    fn node<'a>(
        &mut self,
        event: Event<'a>,
        span: Span,
        parser: &mut StrParser<'a>,
    ) -> Result<Node, PolicyError> {
        self.count(1, &span)?;
        let here = at(&span);
        self.last = here.clone();
        let (node, anchor) = match event {
            Event::Scalar(text, style, anchor, _tag) => {
                let plain = matches!(style, ScalarStyle::Plain);
                // The parser reports a missing value (`key:` and nothing) as `~` with an empty
                // span; keep it empty so that it can be told apart from a written `~`.
                let empty = plain && span.start.index() == span.end.index();
                let node = Node {
                    kind: Kind::Scalar {
                        text: if empty { String::new() } else { text.into_owned() },
                        plain,
                    },
                    at: here,
                };
                (node, anchor)
            }
            Event::SequenceStart(_, anchor, _tag) => {
                let mut items = Vec::new();
                loop {
                    let (event, span) = self.next(parser)?;
                    if matches!(event, Event::SequenceEnd) {
                        break;
                    }
                    items.push(self.node(event, span, parser)?);
                }
                (
                    Node {
                        kind: Kind::Seq(items),
                        at: here,
                    },
                    anchor,
                )
            }
            Event::MappingStart(_, anchor, _tag) => {
                let mut entries: Vec<(Key, Node)> = Vec::new();
                loop {
                    let (event, key_span) = self.next(parser)?;
                    if matches!(event, Event::MappingEnd) {
                        break;
                    }
                    let key_node = self.node(event, key_span, parser)?;
                    let Kind::Scalar { text, .. } = key_node.kind else {
                        return Err(PolicyError::new(
                            self.source,
                            key_node.at,
                            format!("{} used as a mapping key", key_node_kind(&key_node.kind)),
                            "a plain key such as `rules`",
                        ));
                    };
                    let key = Key {
                        text,
                        at: key_node.at,
                    };
                    if let Some((first, _)) = entries.iter().find(|(k, _)| k.text == key.text) {
                        let first_line = match first.at {
                            Location::Line { line, .. } => line,
                            Location::Flag(_) => 0,
                        };
                        return Err(PolicyError::new(
                            self.source,
                            key.at,
                            format!("duplicate key `{}` (first given on line {first_line})", key.text),
                            "each key once per mapping",
                        ));
                    }
                    let (event, value_span) = self.next(parser)?;
                    let mut value = self.node(event, value_span, parser)?;
                    if matches!(&value.kind, Kind::Scalar { text, plain: true } if text.is_empty()) {
                        // `key:` with nothing after it: the empty value's position is wherever
                        // the parser stopped; the key is what the reader should look at.
                        value.at = key.at.clone();
                    }
                    entries.push((key, value));
                }
                (
                    Node {
                        kind: Kind::Map(entries),
                        at: here,
                    },
                    anchor,
                )
            }
            Event::Alias(id) => {
                let Some(target) = self.anchors.get(&id) else {
                    return Err(PolicyError::new(
                        self.source,
                        here,
                        "an alias to an unknown anchor",
                        "an alias (`*name`) after its anchor (`&name`)",
                    ));
                };
                let mut copy = target.clone();
                self.count(size(&copy), &span)?;
                // Errors inside an aliased value point at the alias, where it is used.
                relocate(&mut copy, &here);
                return Ok(copy);
            }
            other => {
                return Err(PolicyError::new(
                    self.source,
                    here,
                    format!("unexpected YAML event {other:?}"),
                    "a value",
                ));
            }
        };
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
        Ok(node)
    }
}

fn key_node_kind(kind: &Kind) -> &'static str {
    match kind {
        Kind::Scalar { .. } => "a scalar",
        Kind::Seq(_) => "a list",
        Kind::Map(_) => "a mapping",
    }
}

fn size(node: &Node) -> usize {
    match &node.kind {
        Kind::Scalar { .. } => 1,
        Kind::Seq(items) => 1 + items.iter().map(size).sum::<usize>(),
        Kind::Map(entries) => 1 + entries.iter().map(|(_, v)| 1 + size(v)).sum::<usize>(),
    }
}

fn relocate(node: &mut Node, to: &Location) {
    node.at = to.clone();
    match &mut node.kind {
        Kind::Scalar { .. } => {}
        Kind::Seq(items) => items.iter_mut().for_each(|item| relocate(item, to)),
        Kind::Map(entries) => {
            for (key, value) in entries {
                key.at = to.clone();
                relocate(value, to);
            }
        }
    }
}

fn scan_error(source: &str, err: &serde_saphyr::granit_parser::ScanError) -> PolicyError {
    let mark = err.marker();
    PolicyError::new(
        source,
        Location::Line {
            line: mark.line(),
            column: mark.col() + 1,
        },
        format!("invalid YAML: {}", err.kind()),
        "valid YAML",
    )
}
