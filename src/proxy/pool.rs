//! Read buffers given back by the event side once it is done with their bytes, so that
//! forwarding reads into memory that is already mapped instead of faulting in fresh pages
//! for every read. Bounded: at most [`KEEP`] buffers wait here; an idle connection holds
//! none of its own.

use std::sync::Mutex;

use bytes::Bytes;

/// Bytes asked of the kernel per read.
pub(crate) const READ_CHUNK: usize = 256 * 1024;
/// Buffers kept for reuse.
const KEEP: usize = 16;

#[derive(Debug, Default)]
pub(crate) struct Pool {
    free: Mutex<Vec<Vec<u8>>>,
}

impl Pool {
    /// An empty buffer of [`READ_CHUNK`] bytes' capacity.
    pub fn get(&self) -> Vec<u8> {
        let v = self.free.lock().unwrap_or_else(|e| e.into_inner()).pop();
        v.unwrap_or_else(|| Vec::with_capacity(READ_CHUNK))
    }

    /// Keeps `v` for a later read, if it is a read buffer and there is room.
    pub fn put_vec(&self, mut v: Vec<u8>) {
        if !(READ_CHUNK..=2 * READ_CHUNK).contains(&v.capacity()) {
            return;
        }
        v.clear();
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        if free.len() < KEEP {
            free.push(v);
        }
    }

    /// Takes back the buffer under `b` when nothing else refers to it any more.
    pub fn put(&self, b: Bytes) {
        if let Ok(mut m) = b.try_into_mut() {
            // Emptied first, so that turning it back into a Vec copies nothing.
            m.clear();
            self.put_vec(m.into());
        }
    }
}
