//! oxiida: a small workflow language whose runtime calls functions written in
//! other languages.
//!
//! The stages, each in its own module: [`syntax`] (lexer and parser) →
//! `resolve` (checks, slots) → [`interp`] (runs on tokio). Foreign functions
//! are reached only through the [`foreign::Host`] seam.
//!
//! ```
//! let src = oxiida::Source::new("demo.ox", "x = 2 ^ 10; print x;");
//! let program = oxiida::compile(&src, &oxiida::foreign::NoHost).unwrap();
//! let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
//! let vars = rt
//!     .block_on(oxiida::execute(&program, &oxiida::foreign::NoHost, &oxiida::interp::Stdout, Default::default()))
//!     .unwrap();
//! assert_eq!(vars[0].1, oxiida::value::Value::Int(1024));
//! ```

#![deny(clippy::undocumented_unsafe_blocks)]

mod builtins;
pub mod codec;
pub mod diagnostic;
pub mod foreign;
pub mod interp;
pub mod ir;
mod ops;
mod resolve;
mod shell;
pub mod syntax;
pub mod value;

pub use diagnostic::{Diagnostic, Stage};
pub use interp::observe;
pub use interp::{
    execute, execute_in, execute_observed, execute_with_inputs, execute_with_interrupt, Context, Interrupt, Limits, Output, TaskObserver,
    Variables,
};

/// A workflow's text and the name its diagnostics show.
#[derive(Clone, Debug)]
pub struct Source {
    pub name: String,
    pub text: String,
}

impl Source {
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Self {
        Source { name: name.into(), text: text.into() }
    }

    /// Renders diagnostics about this source (see [`diagnostic::render`]).
    pub fn render(&self, diagnostics: &[Diagnostic], color: bool) -> String {
        diagnostic::render(diagnostics, &self.name, &self.text, color)
    }
}

/// Parses and resolves a workflow: every error found before running, or a
/// program ready for [`execute`]. Required names are checked against `host`.
pub fn compile(source: &Source, host: &dyn foreign::Host) -> Result<ir::Program, Vec<Diagnostic>> {
    compile_with_inputs(source, host, &[])
}

/// Like [`compile`], for a workflow that gets `inputs` from outside: each is
/// a top-level variable assigned before the first statement, so reading it
/// is fine and an unknown name is still an error before anything runs. Run
/// the program with [`execute_with_inputs`], which binds their values.
///
/// An input must be named like a variable, and not like a builtin, a
/// function of the workflow or a `require`d name. Like every top-level
/// variable, a function cannot read it, and an assignment rebinds it.
pub fn compile_with_inputs(source: &Source, host: &dyn foreign::Host, inputs: &[&str]) -> Result<ir::Program, Vec<Diagnostic>> {
    let (ast, mut errors) = syntax::parse(&source.text);
    match resolve::resolve(&ast, &source.text, host, inputs, !errors.is_empty()) {
        Ok(program) if errors.is_empty() => Ok(program),
        Ok(_) => Err(errors),
        Err(more) => {
            errors.extend(more);
            errors.sort_by_key(|d| d.span.start);
            Err(errors)
        }
    }
}
