//! A capped in-memory sink for a plugin's stdout/stderr: keeps the first N bytes, silently
//! drops the rest (counting them), and never makes the guest's write fail or trap.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

#[derive(Default)]
struct Inner {
    kept: Vec<u8>,
    dropped: usize,
}

/// Shared handle: one clone goes to WASI, one stays with the host to read.
#[derive(Clone)]
pub struct CappedPipe {
    inner: Arc<Mutex<Inner>>,
    cap: usize,
}

impl CappedPipe {
    /// A pipe keeping at most `cap` bytes.
    pub fn new(cap: usize) -> Self {
        CappedPipe {
            inner: Arc::new(Mutex::new(Inner::default())),
            cap,
        }
    }

    /// What was kept (lossy UTF-8) and how many bytes were dropped.
    pub fn contents(&self) -> (String, usize) {
        match self.inner.lock() {
            Ok(i) => (String::from_utf8_lossy(&i.kept).into_owned(), i.dropped),
            Err(_) => (String::new(), 0),
        }
    }

    /// The last `n` bytes kept, trimmed, on one line.
    pub fn tail(&self, n: usize) -> String {
        let (text, _) = self.contents();
        let text = text.trim();
        let start = text.len().saturating_sub(n);
        let start = (start..=text.len())
            .find(|&i| text.is_char_boundary(i))
            .unwrap_or(text.len());
        text[start..].replace('\n', " | ")
    }

    fn write(&self, buf: &[u8]) {
        if let Ok(mut i) = self.inner.lock() {
            let room = self.cap.saturating_sub(i.kept.len());
            let take = room.min(buf.len());
            i.kept.extend_from_slice(&buf[..take]);
            i.dropped += buf.len() - take;
        }
    }
}

impl AsyncWrite for CappedPipe {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.write(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl IsTerminal for CappedPipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CappedPipe {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_first_bytes_and_counts_the_rest() {
        let p = CappedPipe::new(5);
        p.write(b"hello world");
        p.write(b"!");
        assert_eq!(p.contents(), ("hello".to_string(), 7));
        assert_eq!(p.tail(3), "llo");
    }
}
