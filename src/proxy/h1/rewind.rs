//! A client connection handed from the own HTTP/1.1 path to hyper: the bytes the own path
//! already read (a request it does not serve itself) are replayed before the socket's.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf as _, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// A socket with a prefix of already-read bytes.
pub(crate) struct Rewound {
    prefix: Bytes,
    io: TcpStream,
}

impl Rewound {
    /// `io` whose next bytes are `prefix`, then whatever the socket delivers.
    pub(crate) fn new(prefix: Bytes, io: TcpStream) -> Self {
        Rewound { prefix, io }
    }
}

impl AsyncRead for Rewound {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.prefix.is_empty() {
            // As much of the prefix as fits: all of it when it is shorter than the room.
            let part = this.prefix.get(..buf.remaining()).unwrap_or(&this.prefix);
            let n = part.len();
            buf.put_slice(part);
            this.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Rewound {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn the_prefix_comes_first_then_the_socket() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut peer = TcpStream::connect(addr).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let mut rewound = Rewound::new(Bytes::from_static(b"GET / HT"), server);
        peer.write_all(b"TP/1.1\r\n").await.unwrap();
        let mut got = [0u8; 16];
        let mut filled = 0;
        for _ in 0..4 {
            filled += rewound.read(&mut got[filled..]).await.unwrap();
            if filled == 16 {
                break;
            }
        }
        assert_eq!(&got[..filled], b"GET / HTTP/1.1\r\n");
        rewound.write_all(b"ok").await.unwrap();
        let mut two = [0u8; 2];
        peer.read_exact(&mut two).await.unwrap();
        assert_eq!(&two, b"ok");
    }
}
