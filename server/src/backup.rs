//! SIGUSR1: write a consistent copy of the embedded store into `--backup-dir`, while the
//! server keeps serving. redb lets one process open its file, so a backup cannot be taken from
//! outside; and it is never offered over HTTP. Each copy is a complete data directory, named
//! `security-update-<milliseconds since the Unix epoch>` (sorted by time): start a server with `--data` pointing at it to restore.
//!
//! A copy is written as `<name>.partial` and renamed when complete; one left by a process that
//! died mid-copy (a whole store's size of disk) is removed before the next backup. The
//! directory is this server's: backups run one at a time, so no partial copy there is in use.

use std::path::{Path, PathBuf};

use security_update::RedbStore;

/// Installs the SIGUSR1 handler: first thing at start, since SIGUSR1's default action would end
/// the process while it is still opening its store.
pub(crate) fn install() -> Option<tokio::signal::unix::Signal> {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1()) {
        Ok(signal) => Some(signal),
        Err(error) => {
            tracing::warn!(%error, "cannot watch SIGUSR1; no backups on demand");
            None
        }
    }
}

/// Writes a backup at every SIGUSR1 on `signal`, one at a time, in the background, for as long
/// as the process runs.
pub(crate) fn on_sigusr1(
    signal: Option<tokio::signal::unix::Signal>,
    store: Option<RedbStore>,
    dir: Option<PathBuf>,
) {
    if let Some(signal) = signal {
        tokio::spawn(backups(signal, store, dir));
    }
}

async fn backups(
    mut signal: tokio::signal::unix::Signal,
    store: Option<RedbStore>,
    dir: Option<PathBuf>,
) {
    while signal.recv().await.is_some() {
        let (Some(store), Some(dir)) = (&store, &dir) else {
            tracing::warn!(
                "SIGUSR1: no backup written: backups need the embedded store and --backup-dir"
            );
            continue;
        };
        let target = dir.join(format!("security-update-{}", timestamp()));
        let (store, into) = (store.clone(), target.clone());
        let started = std::time::Instant::now();
        let written = tokio::task::spawn_blocking(move || {
            let parent = into.parent().unwrap_or(&into);
            std::fs::create_dir_all(parent).map_err(|error| error.to_string())?;
            sweep_partial_copies(parent);
            store
                .backup_to(&into)
                .map_err(|error| error.message().to_owned())
        })
        .await
        .unwrap_or_else(|error| Err(error.to_string()));
        match written {
            Ok(()) => tracing::info!(
                path = %target.display(),
                millis = started.elapsed().as_millis(),
                "backup written"
            ),
            Err(why) => tracing::error!(path = %target.display(), %why, "backup failed"),
        }
    }
}

/// Removes the partial copies (`security-update-*.partial` directories) a backup that did
/// not finish left in `dir`; anything else there is left alone.
fn sweep_partial_copies(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            continue;
        };
        let partial = name.starts_with("security-update-") && name.ends_with(".partial");
        if !partial || !entry.file_type().is_ok_and(|kind| kind.is_dir()) {
            continue;
        }
        match std::fs::remove_dir_all(entry.path()) {
            Ok(()) => tracing::info!(path = %entry.path().display(), "unfinished backup removed"),
            Err(error) => tracing::warn!(
                path = %entry.path().display(),
                %error,
                "unfinished backup could not be removed"
            ),
        }
    }
}

/// Milliseconds since the Unix epoch, zero-padded to 15 digits so names sort by time.
fn timestamp() -> String {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!("{:015}", since.as_millis())
}
