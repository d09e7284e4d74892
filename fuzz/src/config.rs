//! The policy harness: arbitrary text through `Snapshot::from_toml`, in two modes so
//! that the fuzzer reaches the validator and not only the TOML parser.
//!
//! Input: one mode byte, then
//! - even mode: the whole file, as text (invalid UTF-8 replaced, as an editor would);
//! - odd mode: two bytes naming a line of lb-config/example.toml (little endian, modulo
//!   its line count) and the text that replaces that line.
//!
//! What `compile` promises and is checked here: it returns; a refusal carries at least
//! one diagnostic, each naming the file as given, a line and column that exist in the
//! text (1-based), a message, in file order; warnings of an accepted file are placed the
//! same way; and an accepted policy can be summarised and run by an engine. Must never: accept a policy that an `Engine`
//! cannot be built from.

use std::sync::Arc;

use nvlb::engine::Engine;
use nvlb::policy::{Diagnostic, Snapshot, summary};

const ORIGIN: &str = "fuzz.toml";

/// The text an input stands for.
pub fn text(data: &[u8]) -> Option<String> {
    let (&mode, rest) = data.split_first()?;
    if mode & 1 == 0 {
        return Some(String::from_utf8_lossy(rest).into_owned());
    }
    let (at, replacement) = (rest.get(..2)?, rest.get(2..)?);
    let lines: Vec<&str> = crate::EXAMPLE.lines().collect();
    let at = usize::from(u16::from_le_bytes([at[0], at[1]])) % lines.len();
    let replacement = String::from_utf8_lossy(replacement);
    let mut text = String::with_capacity(crate::EXAMPLE.len() + replacement.len());
    for (i, line) in lines.iter().enumerate() {
        text.push_str(if i == at { &replacement } else { line });
        text.push('\n');
    }
    Some(text)
}

fn placed(d: &Diagnostic, text: &str) -> Result<(), String> {
    // A text of n newlines has n + 1 lines (the last possibly empty).
    let lines = text.matches('\n').count() + 1;
    if d.file != ORIGIN {
        return Err(format!("diagnostic names file {:?}: {d}", d.file));
    }
    if d.line < 1 || d.line > lines {
        return Err(format!("line {} of a {lines}-line text: {d}", d.line));
    }
    let width = text
        .split('\n')
        .nth(d.line - 1)
        .map_or(0, |l| l.chars().count());
    if d.column < 1 || d.column > width + 1 {
        return Err(format!(
            "column {} of a {width}-character line: {d}",
            d.column
        ));
    }
    if d.message.trim().is_empty() {
        return Err(format!("empty message: {d}"));
    }
    Ok(())
}

/// Runs one fuzz input; `Err` names the broken promise.
pub fn run(data: &[u8]) -> Result<(), String> {
    let Some(text) = text(data) else {
        return Ok(());
    };
    match Snapshot::compile(&text, ORIGIN, &crate::options()) {
        Err(e) => {
            if e.errors.is_empty() {
                return Err("refused without a diagnostic".into());
            }
            for d in &e.errors {
                placed(d, &text)?;
            }
            if !e.errors.is_sorted_by_key(|d| (d.line, d.column)) {
                return Err(format!("diagnostics out of file order:\n{e}"));
            }
            let _ = e.to_string();
            Ok(())
        }
        Ok(s) => {
            for d in s.warnings() {
                placed(d, &text)?;
            }
            let _ = summary(&s);
            let s = Arc::new(s);
            let mut engine = Engine::new(s.clone(), 0, 2);
            let mut out = vec![0u8; nvlb::engine::output_len(64)];
            // One frame per port: the engine must be usable with whatever was accepted.
            for mac in [s.balancer().external.mac, s.balancer().provider.mac] {
                let mut frame = [0u8; 64];
                frame[..6].copy_from_slice(&mac.0);
                frame[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
                let _ = engine.process(1, &frame, &mut out);
            }
            Ok(())
        }
    }
}
