//! Errors found in a workflow, and how they are shown to people.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

/// Byte offsets into the source, end exclusive.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    pub fn new(start: usize, end: usize) -> Self {
        Span { start, end }
    }

    /// The smallest span covering both.
    pub fn to(self, other: Span) -> Span {
        Span::new(self.start.min(other.start), self.end.max(other.end))
    }
}

impl From<std::ops::Range<usize>> for Span {
    fn from(r: std::ops::Range<usize>) -> Self {
        Span::new(r.start, r.end)
    }
}

/// Which stage found the problem; it decides the exit status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    Syntax,
    Resolve,
    Runtime,
}

/// One problem in a workflow, located in its source.
#[derive(Clone, Debug, PartialEq)]
pub struct Diagnostic {
    pub stage: Stage,
    pub message: String,
    pub span: Span,
    /// Text shown under the caret; defaults to the message.
    pub label: Option<String>,
    /// A suggestion of what to do instead.
    pub hint: Option<String>,
    /// Extra lines, e.g. a foreign traceback.
    pub notes: Vec<String>,
    /// What the host attached to the failed foreign call that caused this
    /// error (see [`crate::foreign::ForeignError::cause`]), carried unchanged.
    pub cause: Option<Cause>,
}

/// An opaque payload a host attaches to a failed call and gets back in the
/// resulting [`Diagnostic`]: the Python package keeps the raised exception
/// object in it, so `oxiida.run` raises that very object. The runtime never
/// looks inside. Two causes are equal when they are the same allocation.
/// (A thin pointer: a `Diagnostic` stays small enough to return by value.)
#[derive(Clone)]
pub struct Cause(Arc<Box<dyn Any + Send + Sync>>);

impl Cause {
    pub fn new(payload: impl Any + Send + Sync) -> Self {
        Cause(Arc::new(Box::new(payload)))
    }

    /// The payload, when it is a `T`.
    pub fn downcast_ref<T: Any>(&self) -> Option<&T> {
        self.0.downcast_ref()
    }
}

impl fmt::Debug for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Cause(..)")
    }
}

impl PartialEq for Cause {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Diagnostic {
    pub fn new(stage: Stage, span: Span, message: impl Into<String>) -> Self {
        Diagnostic { stage, message: message.into(), span, label: None, hint: None, notes: Vec::new(), cause: None }
    }

    pub fn with_label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// In-place forms of the above, for diagnostics already collected.
    pub fn set_label(&mut self, label: impl Into<String>) -> &mut Self {
        self.label = Some(label.into());
        self
    }

    pub fn set_hint(&mut self, hint: impl Into<String>) -> &mut Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn with_note(mut self, note: impl Into<String>) -> Self {
        self.notes.push(note.into());
        self
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Renders diagnostics the way the CLI prints them: `Error: message`, then
/// `file:line:col`, the source line with a caret, the label and any hint.
pub fn render(diagnostics: &[Diagnostic], file: &str, source: &str, color: bool) -> String {
    use ariadne::{Config, IndexType, Label, Report, ReportKind};
    let config = Config::default().with_color(color).with_index_type(IndexType::Byte);
    let mut out = Vec::new();
    for d in diagnostics {
        // An empty span at the very end (say, "unexpected end of file") still
        // needs a character to point at.
        let start = d.span.start.min(source.len());
        let span = start..d.span.end.clamp(start, source.len());
        let mut report = Report::build(ReportKind::Error, (file, span.clone()))
            .with_config(config)
            .with_message(&d.message)
            .with_label(Label::new((file, span)).with_message(d.label.as_deref().unwrap_or(&d.message)));
        if let Some(hint) = &d.hint {
            report = report.with_help(hint);
        }
        for note in &d.notes {
            report = report.with_note(note);
        }
        let cache = (file, ariadne::Source::from(source));
        // Writing to a Vec cannot fail.
        let _ = report.finish().write(cache, &mut out);
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_shows_file_line_col_source_and_hint() {
        let src = "x = 1;\nprint 1 / x;\n";
        let d = Diagnostic::new(Stage::Runtime, Span::new(15, 16), "division by zero").with_hint("check the divisor");
        let text = render(&[d], "wf.ox", src, false);
        assert!(text.contains("wf.ox:2:9"), "{text}");
        assert!(text.contains("print 1 / x;"), "{text}");
        assert!(text.contains("division by zero"), "{text}");
        assert!(text.contains("check the divisor"), "{text}");
    }

    #[test]
    fn render_survives_spans_past_the_end() {
        let d = Diagnostic::new(Stage::Syntax, Span::new(50, 60), "unexpected end of file");
        let text = render(&[d], "wf.ox", "x = ", false);
        assert!(text.contains("unexpected end of file"), "{text}");
    }
}
