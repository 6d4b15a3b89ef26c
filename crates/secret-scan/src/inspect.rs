//! Decode-and-rescan: the rules and detectors run on the input, then on
//! every encoded span found in it (see [`crate::decode`]), then on what
//! those decode to, down to [`MAX_DEPTH`] layers.
//!
//! Work is bounded: spans of one layer are disjoint and no decoder's output
//! is longer than its input, so each layer decodes at most as many bytes as
//! the layer above; only gzip/zlib streams grow, each capped at
//! [`decode::MAX_INFLATE`], and the whole inspection stops decoding once it
//! has produced [`BUDGET_FACTOR`] times the input (plus 64 KiB), which
//! [`Inspection::complete`] reports.

use std::collections::HashSet;

use crate::decode::{self, Encoding};
use crate::detect::Detector;
use crate::{Finding, RuleSet};

/// Layers of encoding peeled at most (`base64(hex(percent(secret)))` is 3;
/// base64 of gzip is 2).
pub const MAX_DEPTH: usize = 6;
/// Decoded bytes allowed per input byte.
pub const BUDGET_FACTOR: usize = 6;

/// Rules plus detectors, applied through encodings.
#[derive(Debug, Clone)]
pub struct Inspector {
    rules: RuleSet,
    detectors: Vec<Detector>,
}

/// One finding and how it was dressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    /// The finding, positioned in the layer it was found in; its excerpt
    /// comes from that (decoded) layer, secret masked.
    pub finding: Finding,
    /// The encodings peeled to reach it, outermost first (empty: found as
    /// it was).
    pub layers: Vec<Encoding>,
    /// Byte offset in the inspected input: of the finding itself, or of
    /// the outermost encoded span that hid it.
    pub offset: usize,
}

impl Hit {
    /// `base64 > hex`, or `plain`.
    pub fn dressing(&self) -> String {
        if self.layers.is_empty() {
            return "plain".into();
        }
        self.layers
            .iter()
            .map(|e| e.as_str())
            .collect::<Vec<_>>()
            .join(" > ")
    }
}

/// The hits of one inspection.
#[derive(Debug, Clone, Default)]
pub struct Inspection {
    pub hits: Vec<Hit>,
    /// False when the decode budget ran out (a compressed stream inside an
    /// encoding inflated past it): the deepest layers were not all read.
    pub complete: bool,
}

struct Walk<'a> {
    inspector: &'a Inspector,
    budget: usize,
    complete: bool,
    first_only: bool,
    hits: Vec<Hit>,
    seen: HashSet<(String, usize)>,
}

impl Inspector {
    /// An inspector over `rules` plus the given code detectors.
    pub fn new(rules: RuleSet, detectors: &[Detector]) -> Self {
        let mut detectors = detectors.to_vec();
        detectors.sort();
        detectors.dedup();
        Self { rules, detectors }
    }

    /// The rules.
    pub fn rules(&self) -> &RuleSet {
        &self.rules
    }

    /// The detectors.
    pub fn detectors(&self) -> &[Detector] {
        &self.detectors
    }

    /// Every hit in `data`, plain and decoded.
    pub fn inspect(&self, data: &[u8]) -> Inspection {
        self.run(data, false)
    }

    /// The first hit found (plain findings first), doing less work.
    pub fn first(&self, data: &[u8]) -> Option<Hit> {
        self.run(data, true).hits.into_iter().next()
    }

    fn run(&self, data: &[u8], first_only: bool) -> Inspection {
        let mut w = Walk {
            inspector: self,
            budget: data.len().saturating_mul(BUDGET_FACTOR) + (64 << 10),
            complete: true,
            first_only,
            hits: Vec::new(),
            seen: HashSet::new(),
        };
        w.layer(data, &mut Vec::new(), None);
        Inspection {
            hits: w.hits,
            complete: w.complete,
        }
    }
}

impl Walk<'_> {
    fn done(&self) -> bool {
        self.first_only && !self.hits.is_empty()
    }

    /// Scans one layer, then decodes into the next. `outer`: the offset
    /// in the input of the outermost span this layer came from.
    fn layer(&mut self, data: &[u8], layers: &mut Vec<Encoding>, outer: Option<usize>) {
        let findings = self
            .inspector
            .rules
            .scan_detect(data, None, &self.inspector.detectors);
        for f in findings {
            let offset = outer.unwrap_or(f.offset);
            if self.seen.insert((f.rule_id.clone(), offset)) {
                self.hits.push(Hit {
                    finding: f,
                    layers: layers.clone(),
                    offset,
                });
            }
        }
        if self.done() || layers.len() >= MAX_DEPTH {
            return;
        }
        // Only text is decoded again; binary is scanned as it is (a tar
        // or a key file inside base64 still shows its strings).
        if !layers.is_empty() && !decode::is_texty(data) {
            if let Some(inflated) = decode::inflate(data) {
                self.child(inflated, Encoding::Compressed, layers, outer.unwrap_or(0));
            }
            return;
        }
        for d in decode::decode_all(data) {
            let outer = outer.unwrap_or(d.span.start);
            self.child(d.bytes, d.encoding, layers, outer);
            if self.done() || !self.complete {
                return;
            }
        }
    }

    fn child(&mut self, bytes: Vec<u8>, enc: Encoding, layers: &mut Vec<Encoding>, outer: usize) {
        if bytes.len() > self.budget {
            self.complete = false;
            return;
        }
        self.budget -= bytes.len();
        layers.push(enc);
        self.layer(&bytes, layers, Some(outer));
        layers.pop();
    }
}

#[cfg(test)]
mod tests;
