//! TLS for the API listener: rustls with the ring provider, TLS 1.2 and 1.3 only, ALPN `h2`
//! and `http/1.1`, and a certificate that can be replaced while the server runs.
//!
//! The certificate lives in a [`CertSlot`], the server configuration's certificate resolver:
//! swapping the slot changes what *new* handshakes present, and connections already
//! established keep theirs, so a reload drops nothing. [`CertSlot::reload`] reads the cert and
//! key files again and swaps only a pair that parses and matches; a bad pair keeps the old one
//! and says why. [`watch`] calls it on SIGHUP and whenever the files' bytes change (polled:
//! orchestrators swap symlinks and write the cert and the key separately, so a half-written
//! pair is retried at the next poll instead of being taken).

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio_rustls::TlsAcceptor;

/// ALPN protocol id of HTTP/2 (RFC 7301, RFC 9113 section 3.2).
pub(crate) const ALPN_H2: &[u8] = b"h2";
/// ALPN protocol id of HTTP/1.1.
const ALPN_HTTP1: &[u8] = b"http/1.1";

/// Where the certificate chain and its private key are read from.
#[derive(Debug, Clone)]
pub(crate) struct TlsFiles {
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
}

/// The PEM bytes of one certificate/key pair, as last read.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PemPair {
    cert: Vec<u8>,
    key: Vec<u8>,
}

impl PemPair {
    fn read(files: &TlsFiles) -> Result<Self, String> {
        let read = |path: &Path, what: &str| {
            std::fs::read(path)
                .map_err(|error| format!("cannot read {what} {}: {error}", path.display()))
        };
        Ok(Self {
            cert: read(&files.cert, "--tls-cert")?,
            key: read(&files.key, "--tls-key")?,
        })
    }

    /// The certified key these bytes make, if they are a chain and a private key that match.
    fn certified_key(&self, provider: &CryptoProvider) -> Result<CertifiedKey, String> {
        let chain = CertificateDer::pem_slice_iter(&self.cert)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| format!("--tls-cert: not a PEM certificate chain: {error}"))?;
        if chain.is_empty() {
            return Err("--tls-cert: no CERTIFICATE block in the file".to_owned());
        }
        let key = PrivateKeyDer::from_pem_slice(&self.key).map_err(|error| {
            format!("--tls-key: not a PEM private key (PKCS#8, PKCS#1 or SEC1): {error}")
        })?;
        CertifiedKey::from_der(chain, key, provider)
            .map_err(|error| format!("--tls-cert and --tls-key do not make a usable pair: {error}"))
    }
}

/// The certificate new handshakes present; replaceable while connections run.
#[derive(Debug)]
pub(crate) struct CertSlot {
    files: TlsFiles,
    provider: Arc<CryptoProvider>,
    current: RwLock<(PemPair, Arc<CertifiedKey>)>,
    /// The bytes of the last pair that failed, so a bad pair is logged once, not every poll.
    last_refused: RwLock<Option<PemPair>>,
}

/// What a reload did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Reloaded {
    /// The files hold what is already in use.
    Unchanged,
    /// A new pair is in use for new handshakes.
    Replaced,
    /// The files changed but do not make a usable pair: the old one stays.
    Refused(String),
}

impl CertSlot {
    /// Reads and checks the pair once; an error is for the operator (exit 2 at start).
    fn load(files: TlsFiles, provider: Arc<CryptoProvider>) -> Result<Self, String> {
        let pair = PemPair::read(&files)?;
        let key = pair.certified_key(&provider)?;
        Ok(Self {
            files,
            provider,
            current: RwLock::new((pair, Arc::new(key))),
            last_refused: RwLock::new(None),
        })
    }

    /// Reads the files again and swaps in the pair they hold if it is new and usable.
    pub(crate) fn reload(&self) -> Reloaded {
        let pair = match PemPair::read(&self.files) {
            Ok(pair) => pair,
            Err(error) => return Reloaded::Refused(error),
        };
        if self.current.read().is_ok_and(|current| current.0 == pair) {
            return Reloaded::Unchanged;
        }
        match pair.certified_key(&self.provider) {
            Ok(key) => {
                if let Ok(mut current) = self.current.write() {
                    *current = (pair, Arc::new(key));
                }
                if let Ok(mut refused) = self.last_refused.write() {
                    *refused = None;
                }
                Reloaded::Replaced
            }
            Err(error) => {
                if let Ok(mut refused) = self.last_refused.write() {
                    if refused.as_ref() == Some(&pair) {
                        // Already said why; stay quiet until the files change again.
                        return Reloaded::Unchanged;
                    }
                    *refused = Some(pair);
                }
                Reloaded::Refused(error)
            }
        }
    }
}

impl ResolvesServerCert for CertSlot {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.read().ok().map(|current| current.1.clone())
    }
}

/// The TLS side of the listener: the acceptor and the slot behind it.
#[derive(Clone)]
pub(crate) struct Tls {
    pub(crate) acceptor: TlsAcceptor,
    pub(crate) slot: Arc<CertSlot>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("slot", &self.slot)
            .finish_non_exhaustive()
    }
}

impl Tls {
    /// Loads `files` and builds the server configuration: ring only (one crypto provider, not
    /// aws-lc-rs beside it), TLS 1.3 and 1.2, no client certificates, ALPN h2 then http/1.1.
    pub(crate) fn load(files: TlsFiles) -> Result<Self, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let slot = Arc::new(CertSlot::load(files, provider.clone())?);
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|error| format!("TLS configuration: {error}"))?
            .with_no_client_auth()
            .with_cert_resolver(slot.clone());
        config.alpn_protocols = vec![ALPN_H2.to_vec(), ALPN_HTTP1.to_vec()];
        Ok(Self {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            slot,
        })
    }
}

/// Reloads the certificate every `interval` when the files changed, and at once when `hup`
/// fires (the server's SIGHUP fan-out). Logs what each reload did. Runs until `hup` closes.
pub(crate) async fn watch(
    slot: Arc<CertSlot>,
    interval: Duration,
    mut hup: tokio::sync::broadcast::Receiver<()>,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        let by_signal = tokio::select! {
            _ = ticker.tick() => false,
            received = hup.recv() => match received {
                Ok(()) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => true,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            },
        };
        // File reads are small but blocking: off the workers.
        let reloading = slot.clone();
        let outcome = tokio::task::spawn_blocking(move || reloading.reload()).await;
        match outcome {
            Ok(Reloaded::Replaced) => tracing::info!("TLS certificate reloaded"),
            Ok(Reloaded::Refused(why)) => {
                tracing::warn!(%why, "TLS certificate not reloaded; the old one stays in use");
            }
            Ok(Reloaded::Unchanged) if by_signal => {
                tracing::info!("TLS certificate files unchanged");
            }
            Ok(Reloaded::Unchanged) => {}
            Err(error) => tracing::warn!(%error, "TLS reload task failed"),
        }
    }
}
