//! The byte stream under an IMAP session: TCP, TLS from the first byte, or
//! TCP upgraded by STARTTLS. Takes a host, port and optional extra CA file;
//! gives a stream async-imap can drive. Never speaks IMAP beyond the
//! STARTTLS exchange's transport switch. Fails with io errors (connect,
//! handshake) that the caller wraps.
//!
//! TLS is rustls with the ring provider chosen explicitly (two providers are
//! linked in this crate, and rustls' implicit default would panic), trusting
//! the system roots plus `ca_file`.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use std::io;
use std::net::IpAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// A connection to the IMAP server, encrypted or not.
#[derive(Debug)]
pub enum ImapStream {
    /// Plain TCP (loopback tests, or before STARTTLS).
    Plain(TcpStream),
    /// TLS over TCP.
    Tls(Box<TlsStream<TcpStream>>),
}

impl ImapStream {
    /// Opens a TCP connection with Nagle off (IMAP is request/response: small
    /// commands must not wait for an ACK).
    pub async fn connect(host: &str, port: u16) -> io::Result<TcpStream> {
        let tcp = TcpStream::connect((host, port)).await?;
        tcp.set_nodelay(true)?;
        Ok(tcp)
    }

    /// Runs the TLS handshake over `tcp`, checking the certificate against `host`.
    pub async fn tls(tcp: TcpStream, host: &str, ca_file: Option<&Path>) -> io::Result<ImapStream> {
        let config = client_config(ca_file)?;
        let name = server_name(host)?;
        let stream = TlsConnector::from(config).connect(name, tcp).await?;
        Ok(ImapStream::Tls(Box::new(stream)))
    }

    /// The plain TCP stream, if this is not (yet) encrypted.
    pub fn into_plain(self) -> Option<TcpStream> {
        match self {
            ImapStream::Plain(tcp) => Some(tcp),
            ImapStream::Tls(_) => None,
        }
    }
}

/// Whether `host` names this machine (plain text is tolerated only there).
pub fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn server_name(host: &str) -> io::Result<ServerName<'static>> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(bare.to_owned())
        .map_err(|err| io::Error::new(io::ErrorKind::InvalidInput, err))
}

fn client_config(ca_file: Option<&Path>) -> io::Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);
    if let Some(path) = ca_file {
        for cert in CertificateDer::pem_file_iter(path).map_err(pem_error)? {
            roots
                .add(cert.map_err(pem_error)?)
                .map_err(|err| io::Error::new(io::ErrorKind::InvalidData, err))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|err| io::Error::new(io::ErrorKind::InvalidInput, err))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

fn pem_error(err: rustls::pki_types::pem::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("ca_file: {err}"))
}

impl AsyncRead for ImapStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ImapStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            ImapStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ImapStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ImapStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            ImapStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ImapStream::Plain(s) => Pin::new(s).poll_flush(cx),
            ImapStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ImapStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            ImapStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_this_machine_counts_as_loopback() {
        for (host, expected) in [
            ("localhost", true),
            ("127.0.0.1", true),
            ("::1", true),
            ("[::1]", true),
            ("imap.gmail.com", false),
            ("10.0.0.1", false),
        ] {
            assert_eq!(is_loopback(host), expected, "{host}");
        }
    }

    #[test]
    fn a_missing_ca_file_is_an_error_not_a_silent_default() {
        let err = client_config(Some(Path::new("/nonexistent/ca.pem"))).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }
}
