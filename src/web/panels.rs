//! The view's analysis tabs: conversation transcripts, the objects extracted over P2P
//! (with their SHA1D check and, for pictures, their bytes to show) and the discovery
//! report, kept up to date from the (already redacted) events the store receives.
//! Bounded: past its byte budget a panel stops growing and says so. It reads events only;
//! it never re-parses payload bytes.

use std::sync::Arc;

use serde::Serialize;

use crate::analysis::extract::{Check, Extractor, Limits, Object};
use crate::analysis::report::Report;
use crate::analysis::transcript::{Conversation, Transcripts};
use crate::event::{Event, EventKind, Service};
use crate::protocol::tables::Tables;

/// Byte budgets of the panels.
#[derive(Debug, Clone, Copy)]
pub struct PanelLimits {
    /// Payload bytes of switchboard messages fed to the transcripts.
    pub transcript: u64,
    /// Bytes of object data kept to be shown.
    pub object_data: u64,
    /// Largest object whose data is kept.
    pub object_max: u64,
    /// Most objects listed.
    pub objects: usize,
}

impl Default for PanelLimits {
    fn default() -> Self {
        PanelLimits {
            transcript: 64 << 20,
            object_data: 64 << 20,
            object_max: 8 << 20,
            objects: 10_000,
        }
    }
}

/// One extracted object as the page lists it.
#[derive(Debug, Clone, Serialize)]
pub struct ObjectView {
    pub id: usize,
    pub kind: String,
    pub name: Option<String>,
    pub creator: Option<String>,
    pub sender: Option<String>,
    pub conn: u64,
    pub size: u64,
    pub complete: bool,
    /// true: SHA1D matches, false: it does not, None: no SHA1D known.
    pub sha1d_ok: Option<bool>,
    pub sha1d_check: &'static str,
    pub sha1: String,
    /// Its data is kept and is a picture the browser can show.
    pub image: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duplicate_of: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    #[serde(skip)]
    pub data: Option<(&'static str, Vec<u8>)>,
}

/// The MIME type of picture bytes, from their signature.
pub fn image_type(b: &[u8]) -> Option<&'static str> {
    if b.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if b.starts_with(b"\xff\xd8\xff") {
        Some("image/jpeg")
    } else if b.starts_with(b"GIF87a") || b.starts_with(b"GIF89a") {
        Some("image/gif")
    } else if b.starts_with(b"BM") && b.len() > 26 {
        Some("image/bmp")
    } else {
        None
    }
}

pub struct Panels {
    tables: Arc<Tables>,
    limits: PanelLimits,
    pub transcripts: Transcripts,
    transcript_bytes: u64,
    pub transcript_stopped: bool,
    extractor: Extractor,
    pub objects: Vec<ObjectView>,
    object_bytes: u64,
    pub objects_not_listed: u64,
    pub report: Report,
    finished: bool,
}

impl Panels {
    pub fn new(tables: Arc<Tables>, limits: PanelLimits, inputs: Vec<String>) -> Panels {
        let report = Report {
            inputs,
            ..Report::default()
        };
        Panels {
            tables,
            limits,
            transcripts: Transcripts::default(),
            transcript_bytes: 0,
            transcript_stopped: false,
            extractor: Extractor::new(Limits::default()),
            objects: Vec::new(),
            object_bytes: 0,
            objects_not_listed: 0,
            report,
            finished: false,
        }
    }

    fn keep(&mut self, found: Vec<Object>) {
        for o in found {
            if self.objects.len() >= self.limits.objects {
                self.objects_not_listed += 1;
                continue;
            }
            let sha1d_ok = match &o.check {
                Check::Match => Some(true),
                Check::Mismatch { .. } => Some(false),
                Check::NoHash => None,
            };
            let kind = image_type(&o.data);
            let fits = o.size <= self.limits.object_max
                && self.object_bytes + o.size <= self.limits.object_data;
            let data = match (kind, fits, o.duplicate_of) {
                (Some(k), true, None) => {
                    self.object_bytes += o.size;
                    Some((k, o.data.clone()))
                }
                _ => None,
            };
            let note = match &o.check {
                Check::Mismatch { expected } => Some(format!("MSNObject says SHA1D {expected}")),
                _ if !o.problems.is_empty() => Some(o.problems.join("; ")),
                _ if kind.is_some() && !fits => Some("too large to keep for the view".into()),
                _ => None,
            };
            self.objects.push(ObjectView {
                id: o.index,
                kind: o.kind.clone(),
                name: o.name.clone(),
                creator: o
                    .msnobj
                    .as_ref()
                    .and_then(|m| m.creator().map(str::to_string)),
                sender: o.sender.clone(),
                conn: o.conn,
                size: o.size,
                complete: o.complete,
                sha1d_ok,
                sha1d_check: o.check.as_str(),
                sha1: o.sha1.clone(),
                image: data.is_some(),
                duplicate_of: o.duplicate_of,
                note,
                data,
            });
        }
    }

    /// Takes in one event (already redacted unless the view shows secrets).
    pub fn add(&mut self, ev: &Event<'_>) {
        if self.finished {
            return;
        }
        self.report.add(ev, &self.tables);
        let mut found = Vec::new();
        self.extractor.event(ev, &mut found);
        if !found.is_empty() {
            self.keep(found);
        }
        if !self.transcript_stopped {
            let w = match &ev.kind {
                EventKind::Command(c) if ev.service == Service::Sb || c.cmd == "SDG" => {
                    c.line.len() as u64 + c.payload.as_ref().map_or(0, |p| p.length)
                }
                _ => 0,
            };
            self.transcript_bytes += w;
            if self.transcript_bytes > self.limits.transcript {
                self.transcript_stopped = true;
            } else {
                self.transcripts.add(ev);
            }
        }
    }

    /// End of input: objects still being reassembled are reported as they are.
    pub fn finish(&mut self) {
        if self.finished {
            return;
        }
        let mut found = Vec::new();
        self.extractor.finish(&mut found);
        self.keep(found);
        self.finished = true;
    }

    /// Every conversation, ended or not, by connection.
    pub fn conversations(&self) -> Vec<&Conversation> {
        let mut v: Vec<&Conversation> = self
            .transcripts
            .done
            .iter()
            .chain(self.transcripts.open())
            .filter(|c| !c.entries.is_empty())
            .collect();
        v.sort_by_key(|c| c.conn);
        v
    }

    pub fn notes(&self) -> &[String] {
        &self.extractor.notes
    }
}
