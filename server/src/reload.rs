//! SIGHUP: reload what can change without a restart. The signal is fanned out on a broadcast
//! channel; each reloadable piece (the TLS certificate, the JWKS file, the schema file)
//! listens on its own receiver. A file that cannot be read or parsed keeps what is in use and
//! says why in the log: a bad rotation never takes a running server down.

use std::path::PathBuf;

use security_update::{JwkSet, JwtValidator, ResourceSchema, SchemaReloader};
use tokio::sync::broadcast;

/// Sends `()` on the returned channel at every SIGHUP, for as long as the process runs. The
/// handler is installed before this returns (SIGHUP's default action would end the process).
pub(crate) fn sighup() -> broadcast::Sender<()> {
    let (hup, _) = broadcast::channel(4);
    let sender = hup.clone();
    let mut signal = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(signal) => signal,
        Err(error) => {
            tracing::warn!(%error, "cannot watch SIGHUP; nothing reloads");
            return hup;
        }
    };
    tokio::spawn(async move {
        while signal.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading");
            let _ = sender.send(());
        }
    });
    hup
}

/// The files SIGHUP reloads into the running stack.
pub(crate) struct Reloadable {
    /// `--jwks` and the validator that uses it.
    pub(crate) jwks: Option<(PathBuf, JwtValidator)>,
    /// `--schema` and the slot the stack reads it from.
    pub(crate) schema: Option<(PathBuf, SchemaReloader)>,
}

impl Reloadable {
    /// Reloads at every message on `hup` until it closes.
    pub(crate) async fn run(self, mut hup: broadcast::Receiver<()>) {
        loop {
            match hup.recv().await {
                Ok(()) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return,
            }
            if let Some((path, validator)) = &self.jwks {
                match reload_jwks(path, validator).await {
                    Ok(keys) => tracing::info!(path = %path.display(), keys, "JWKS reloaded"),
                    Err(why) => tracing::warn!(
                        path = %path.display(), %why,
                        "JWKS not reloaded; the keys in use stay"
                    ),
                }
            }
            if let Some((path, reloader)) = &self.schema {
                match read(path.clone())
                    .await
                    .and_then(|text| parse_schema(&text))
                {
                    Ok(schema) => {
                        reloader.replace(schema);
                        tracing::info!(path = %path.display(), "schema reloaded");
                    }
                    Err(why) => tracing::warn!(
                        path = %path.display(), %why,
                        "schema not reloaded; the schema in use stays"
                    ),
                }
            }
        }
    }
}

async fn reload_jwks(path: &std::path::Path, validator: &JwtValidator) -> Result<usize, String> {
    let text = read(path.to_path_buf()).await?;
    let jwks: JwkSet =
        serde_json::from_str(&text).map_err(|error| format!("not a JWKS document: {error}"))?;
    validator
        .replace_keys(&jwks)
        .map_err(|error| error.to_string())?;
    Ok(jwks.keys.len())
}

/// Compiles the text of a `--schema` file.
pub(crate) fn parse_schema(text: &str) -> Result<ResourceSchema, String> {
    let json: serde_json::Value =
        serde_json::from_str(text).map_err(|error| format!("not JSON: {error}"))?;
    ResourceSchema::from_json_schema(&json).map_err(|error| error.to_string())
}

async fn read(path: PathBuf) -> Result<String, String> {
    // Small files; read off the workers.
    tokio::task::spawn_blocking(move || std::fs::read_to_string(&path))
        .await
        .map_err(|error| error.to_string())?
        .map_err(|error| format!("cannot read it: {error}"))
}
