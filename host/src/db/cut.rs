//! A plugin session's connection, seen from the host's side of the wire: the server's
//! messages are framed (a type byte and a length), and the few whose size a plugin controls
//! are cut before the driver buffers them. An error or notice (`RAISE` with a 90 MB message,
//! a syntax error that quotes a long statement) keeps at most [`FIELD_CAP`] bytes of each
//! field; a result row (or `COPY` data message) longer than the session's row cap becomes an error the driver
//! reports, and the rest of that query's answer is read and dropped. Everything else passes
//! through unchanged.
//!
//! The stream sits under the driver on a plain connection and over the TLS layer on an
//! encrypted one ([`CutTls`]); the plain one passes the encrypted bytes through once the
//! server agrees to TLS.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BufMut, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};

/// The most bytes kept of one field (message, detail, hint, context, ...) of an error or
/// notice.
pub const FIELD_CAP: usize = 8 * 1024;
/// An error or notice up to this size passes whole (its fields are all within their cap).
const PASS_WHOLE: usize = FIELD_CAP;
/// The SSLRequest and GSSENCRequest codes (the reply to them is one unframed byte).
const SSL_REQUEST: [u8; 4] = 80_877_103u32.to_be_bytes();
const GSS_REQUEST: [u8; 4] = 80_877_104u32.to_be_bytes();

/// Where the reader is in the server's byte stream.
#[derive(Debug)]
enum Read {
    /// Before the client's first message (the server speaks second).
    Start,
    /// The next byte is the unframed answer to an SSL or GSS request.
    EncryptionAnswer,
    /// Everything passes through: encrypted bytes, which the TLS layer above decrypts.
    Through,
    /// Reading a message header (type byte and length).
    Header { buf: [u8; 5], have: usize },
    /// Passing the rest of a message through.
    Body { left: usize },
    /// Cutting an error or notice: its fields so far (`out`, without the header), the field
    /// being read (code, bytes kept of it) and the body bytes left to read.
    Fields {
        kind: u8,
        left: usize,
        out: Vec<u8>,
        field: Option<(u8, usize)>,
    },
    /// Dropping the rest of a message, then every message up to the next `ReadyForQuery`.
    Drop { left: usize },
    /// Dropping messages up to the next `ReadyForQuery`, which passes.
    UntilReady { buf: [u8; 5], have: usize },
}

/// The stream, with the cuts; `T` is the socket or the TLS stream.
pub struct Cut<T> {
    inner: T,
    read: Read,
    /// Bytes ready for the driver.
    out: BytesMut,
    /// The first bytes the client wrote, until it is known whether it asked for encryption.
    first: Vec<u8>,
    /// The longest result row passed to the driver.
    row_cap: usize,
}

impl<T> Cut<T> {
    /// `inner` with its server messages cut; rows over `row_cap` bytes are refused.
    pub fn new(inner: T, row_cap: usize) -> Self {
        Cut {
            inner,
            read: Read::Start,
            out: BytesMut::new(),
            first: Vec::new(),
            row_cap,
        }
    }

    /// Feeds bytes read from the server through the state machine into `out`.
    fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            match &mut self.read {
                Read::Start | Read::Through => {
                    self.out.put_slice(data);
                    return;
                }
                Read::EncryptionAnswer => {
                    let answer = data[0];
                    self.out.put_u8(answer);
                    data = &data[1..];
                    self.read = if answer == b'S' || answer == b'G' {
                        Read::Through
                    } else {
                        Read::Header {
                            buf: [0; 5],
                            have: 0,
                        }
                    };
                }
                Read::Header { buf, have } | Read::UntilReady { buf, have } => {
                    let n = (5 - *have).min(data.len());
                    buf[*have..*have + n].copy_from_slice(&data[..n]);
                    *have += n;
                    data = &data[n..];
                    if *have < 5 {
                        return;
                    }
                    let header = *buf;
                    let dropping = matches!(self.read, Read::UntilReady { .. });
                    let kind = header[0];
                    let len =
                        u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
                    let body = len.saturating_sub(4);
                    self.read = if dropping {
                        if kind == b'Z' {
                            self.out.put_slice(&header);
                            Read::Body { left: body }
                        } else {
                            Read::Drop { left: body }
                        }
                    } else if (kind == b'E' || kind == b'N') && body > PASS_WHOLE {
                        Read::Fields {
                            kind,
                            left: body,
                            out: Vec::new(),
                            field: None,
                        }
                    } else if (kind == b'D' || kind == b'd') && body > self.row_cap {
                        self.out.put_slice(&refusal(body, self.row_cap));
                        Read::Drop { left: body }
                    } else {
                        self.out.put_slice(&header);
                        Read::Body { left: body }
                    };
                    self.settle();
                }
                Read::Body { left } => {
                    let n = (*left).min(data.len());
                    self.out.put_slice(&data[..n]);
                    *left -= n;
                    data = &data[n..];
                    self.settle();
                }
                Read::Drop { left } => {
                    let n = (*left).min(data.len());
                    *left -= n;
                    data = &data[n..];
                    if *left == 0 {
                        self.read = Read::UntilReady {
                            buf: [0; 5],
                            have: 0,
                        };
                    }
                }
                Read::Fields {
                    left, out, field, ..
                } => {
                    let n = (*left).min(data.len());
                    for &b in &data[..n] {
                        match field {
                            None => {
                                out.push(b);
                                if b != 0 {
                                    *field = Some((b, 0));
                                }
                            }
                            Some((_, kept)) => {
                                if b == 0 {
                                    out.push(0);
                                    *field = None;
                                } else if *kept < FIELD_CAP {
                                    out.push(b);
                                    *kept += 1;
                                }
                            }
                        }
                    }
                    *left -= n;
                    data = &data[n..];
                    self.settle();
                }
            }
        }
    }

    /// Moves on from a message whose body has been read whole.
    fn settle(&mut self) {
        let next = match &mut self.read {
            Read::Body { left: 0 } => true,
            Read::Fields {
                kind, left: 0, out, ..
            } => {
                let body = valid_utf8_fields(std::mem::take(out));
                self.out.put_u8(*kind);
                self.out.put_u32((body.len() + 4) as u32);
                self.out.put_slice(&body);
                true
            }
            _ => false,
        };
        if next {
            self.read = Read::Header {
                buf: [0; 5],
                have: 0,
            };
        }
    }

    /// Watches the client's first message: an SSL or GSS request is answered with one
    /// unframed byte.
    fn wrote(&mut self, data: &[u8]) {
        if !matches!(self.read, Read::Start) {
            return;
        }
        let need = 8 - self.first.len();
        self.first.extend_from_slice(&data[..need.min(data.len())]);
        if self.first.len() == 8 {
            let code = &self.first[4..8];
            self.read = if code == SSL_REQUEST || code == GSS_REQUEST {
                Read::EncryptionAnswer
            } else {
                Read::Header {
                    buf: [0; 5],
                    have: 0,
                }
            };
        }
    }
}

/// A field cut in the middle of a UTF-8 sequence ends at the sequence's start.
fn valid_utf8_fields(body: Vec<u8>) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len());
    for field in body.split(|&b| b == 0) {
        if field.is_empty() {
            continue;
        }
        let (code, value) = (field[0], &field[1..]);
        let valid = match std::str::from_utf8(value) {
            Ok(_) => value,
            Err(e) => &value[..e.valid_up_to()],
        };
        out.push(code);
        out.extend_from_slice(valid);
        out.push(0);
    }
    out.push(0);
    out
}

/// The error that stands in for a result row longer than the cap.
fn refusal(row: usize, cap: usize) -> Vec<u8> {
    let message = format!(
        "a result row of {row} bytes is more than the {cap} bytes a step may receive at once (max_result_bytes); the query's result was dropped"
    );
    let mut body = Vec::new();
    for (code, value) in [
        (b'S', "ERROR"),
        (b'V', "ERROR"),
        (b'C', "54000"),
        (b'M', message.as_str()),
    ] {
        body.push(code);
        body.extend_from_slice(value.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut msg = vec![b'E'];
    msg.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    msg.extend_from_slice(&body);
    msg
}

impl<T: AsyncRead + Unpin> AsyncRead for Cut<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if !this.out.is_empty() {
                let n = this.out.len().min(buf.remaining());
                buf.put_slice(&this.out[..n]);
                this.out.advance(n);
                return Poll::Ready(Ok(()));
            }
            if matches!(this.read, Read::Through) {
                return Pin::new(&mut this.inner).poll_read(cx, buf);
            }
            let mut scratch = [0u8; 16 * 1024];
            let mut rb = ReadBuf::new(&mut scratch);
            match Pin::new(&mut this.inner).poll_read(cx, &mut rb) {
                Poll::Ready(Ok(())) => {
                    let got = rb.filled();
                    if got.is_empty() {
                        return Poll::Ready(Ok(()));
                    }
                    let got = got.to_vec();
                    this.feed(&got);
                }
                other => return other,
            }
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Cut<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_write(cx, data) {
            Poll::Ready(Ok(n)) => {
                this.wrote(&data[..n]);
                Poll::Ready(Ok(n))
            }
            other => other,
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl<T: TlsStream + Unpin> TlsStream for Cut<T> {
    fn channel_binding(&self) -> ChannelBinding {
        self.inner.channel_binding()
    }
}

/// A TLS connector whose streams are cut ([`Cut`] over the decrypted stream).
#[derive(Clone)]
pub struct CutTls<M> {
    inner: M,
    row_cap: usize,
}

impl<M> CutTls<M> {
    /// `inner`, its sessions' rows capped at `row_cap` bytes.
    pub fn new(inner: M, row_cap: usize) -> Self {
        CutTls { inner, row_cap }
    }
}

impl<M, S> MakeTlsConnect<S> for CutTls<M>
where
    M: MakeTlsConnect<S>,
    <M::TlsConnect as TlsConnect<S>>::Future: Send + 'static,
    M::Stream: Send + 'static,
{
    type Stream = Cut<M::Stream>;
    type TlsConnect = CutTls<M::TlsConnect>;
    type Error = M::Error;

    fn make_tls_connect(&mut self, domain: &str) -> Result<Self::TlsConnect, Self::Error> {
        Ok(CutTls {
            inner: self.inner.make_tls_connect(domain)?,
            row_cap: self.row_cap,
        })
    }
}

impl<C, S> TlsConnect<S> for CutTls<C>
where
    C: TlsConnect<S>,
    C::Future: Send + 'static,
    C::Stream: Send + 'static,
{
    type Stream = Cut<C::Stream>;
    type Error = C::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Stream, Self::Error>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        let row_cap = self.row_cap;
        let handshake = self.inner.connect(stream);
        Box::pin(async move { Ok(Cut::new(handshake.await?, row_cap)) })
    }
}

/// A plugin session's socket: TCP (with the configured keepalives) or a Unix socket.
pub enum Socket {
    /// TCP.
    Tcp(tokio::net::TcpStream),
    /// A Unix-domain socket.
    #[cfg(unix)]
    Unix(tokio::net::UnixStream),
}

impl Socket {
    /// Connects to `host`:`port` (a Unix socket directory or a host name) as `config` says.
    pub async fn open(
        host: &tokio_postgres::config::Host,
        port: u16,
        config: &tokio_postgres::Config,
    ) -> io::Result<Socket> {
        match host {
            tokio_postgres::config::Host::Tcp(name) => {
                let stream = tokio::net::TcpStream::connect((name.as_str(), port)).await?;
                stream.set_nodelay(true)?;
                if config.get_keepalives() {
                    let mut ka =
                        socket2::TcpKeepalive::new().with_time(config.get_keepalives_idle());
                    if let Some(i) = config.get_keepalives_interval() {
                        ka = ka.with_interval(i);
                    }
                    if let Some(r) = config.get_keepalives_retries() {
                        ka = ka.with_retries(r);
                    }
                    socket2::SockRef::from(&stream).set_tcp_keepalive(&ka)?;
                }
                Ok(Socket::Tcp(stream))
            }
            #[cfg(unix)]
            tokio_postgres::config::Host::Unix(dir) => Ok(Socket::Unix(
                tokio::net::UnixStream::connect(dir.join(format!(".s.PGSQL.{port}"))).await?,
            )),
        }
    }
}

impl AsyncRead for Socket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Socket::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            #[cfg(unix)]
            Socket::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Socket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Socket::Tcp(s) => Pin::new(s).poll_write(cx, data),
            #[cfg(unix)]
            Socket::Unix(s) => Pin::new(s).poll_write(cx, data),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Socket::Tcp(s) => Pin::new(s).poll_flush(cx),
            #[cfg(unix)]
            Socket::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Socket::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            #[cfg(unix)]
            Socket::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// Drives a plugin session's connection on a task of its own. The server's notices (a
/// plugin's `RAISE NOTICE`) are logged at debug level, inert and cut; nothing else is.
pub fn drive<S, T>(mut connection: tokio_postgres::Connection<S, T>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(tokio_postgres::AsyncMessage::Notice(n))) => tracing::debug!(
                    "server notice in a plugin session: {}",
                    crate::text::inert(n.message(), 200)
                ),
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    tracing::debug!("plugin session closed: {}", super::PgError::from(e));
                    break;
                }
                None => break,
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(kind: u8, fields: &[(u8, &[u8])]) -> Vec<u8> {
        let mut body = Vec::new();
        for (c, v) in fields {
            body.push(*c);
            body.extend_from_slice(v);
            body.push(0);
        }
        body.push(0);
        let mut m = vec![kind];
        m.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
        m.extend_from_slice(&body);
        m
    }

    fn framed(cut: &mut Cut<()>) {
        cut.wrote(&[0, 0, 0, 8, 0, 3, 0, 0]);
    }

    /// Feeds `wire` in pieces of `step` bytes.
    fn feed(cut: &mut Cut<()>, wire: &[u8], step: usize) -> Vec<u8> {
        for chunk in wire.chunks(step) {
            cut.feed(chunk);
        }
        cut.out.split().to_vec()
    }

    #[test]
    fn small_messages_pass_unchanged() {
        let mut wire = message(b'E', &[(b'S', b"ERROR"), (b'M', b"boom")]);
        wire.extend(message(b'Z', &[]));
        for step in [1, 3, 1000] {
            let mut cut = Cut::new((), 1 << 20);
            framed(&mut cut);
            assert_eq!(feed(&mut cut, &wire, step), wire);
        }
    }

    #[test]
    fn a_huge_error_keeps_a_bounded_prefix_of_each_field() {
        let big = vec![b'x'; 1 << 20];
        let mut wire = message(
            b'E',
            &[
                (b'S', b"ERROR"),
                (b'M', &big),
                (b'D', &big),
                (b'H', b"hint"),
            ],
        );
        wire.extend(message(b'Z', &[(b'I', b"")]));
        let mut cut = Cut::new((), 1 << 20);
        framed(&mut cut);
        let out = feed(&mut cut, &wire, 7777);
        let cut_len = u32::from_be_bytes([out[1], out[2], out[3], out[4]]) as usize;
        assert!(cut_len < 3 * FIELD_CAP, "{cut_len}");
        let expected = message(
            b'E',
            &[
                (b'S', b"ERROR"),
                (b'M', &big[..FIELD_CAP]),
                (b'D', &big[..FIELD_CAP]),
                (b'H', b"hint"),
            ],
        );
        assert_eq!(&out[..expected.len()], &expected[..]);
        assert_eq!(out[expected.len()], b'Z', "the next message follows intact");
    }

    #[test]
    fn a_field_cut_inside_a_character_ends_before_it() {
        let mut text = vec![b'a'; FIELD_CAP - 1];
        text.extend("é".repeat(FIELD_CAP).as_bytes());
        let wire = message(b'N', &[(b'M', &text)]);
        let mut cut = Cut::new((), 1 << 20);
        framed(&mut cut);
        let out = feed(&mut cut, &wire, 4096);
        let m = &out[6..out.len() - 2];
        assert!(std::str::from_utf8(m).is_ok());
        assert_eq!(m.len(), FIELD_CAP - 1);
    }

    #[test]
    fn an_oversized_row_becomes_an_error_and_the_rest_of_its_answer_is_dropped() {
        let row = vec![b'r'; 5000];
        let mut wire = message(b'T', &[(b'a', b"")]);
        wire.extend(message(b'D', &[(0, &row)]));
        wire.extend(message(b'D', &[(0, b"small")]));
        wire.extend(message(b'C', &[(b'S', b"SELECT 2")]));
        wire.extend(message(b'Z', &[(b'T', b"")]));
        wire.extend(message(b'D', &[(0, b"next")]));
        let mut cut = Cut::new((), 1000);
        framed(&mut cut);
        let out = feed(&mut cut, &wire, 333);
        let t = message(b'T', &[(b'a', b"")]);
        assert_eq!(&out[..t.len()], &t[..]);
        let rest = &out[t.len()..];
        assert_eq!(rest[0], b'E');
        let e_len = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize + 1;
        assert!(String::from_utf8_lossy(&rest[..e_len]).contains("max_result_bytes"));
        let after = &rest[e_len..];
        let z = message(b'Z', &[(b'T', b"")]);
        assert_eq!(
            &after[..z.len()],
            &z[..],
            "dropped up to ReadyForQuery, which passes"
        );
        assert_eq!(&after[z.len()..], &message(b'D', &[(0, b"next")])[..]);
    }

    #[test]
    fn the_answer_to_an_ssl_request_is_one_unframed_byte() {
        let mut cut = Cut::new((), 1 << 20);
        cut.wrote(&[0, 0, 0, 8]);
        cut.wrote(&SSL_REQUEST);
        let mut wire = vec![b'N'];
        wire.extend(message(b'R', &[]));
        assert_eq!(feed(&mut cut, &wire, 2), wire);
        let mut tls = Cut::new((), 1 << 20);
        tls.wrote(&[0, 0, 0, 8, 4, 210, 22, 47]);
        let wire = b"S\x16\x03\x01 encrypted".to_vec();
        assert_eq!(feed(&mut tls, &wire, 5), wire);
    }
}
