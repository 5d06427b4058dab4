//! SIGUSR1: write a consistent copy of the embedded store into `--backup-dir`, while the
//! server keeps serving. redb lets one process open its file, so a backup cannot be taken from
//! outside; and it is never offered over HTTP. Each copy is a complete data directory, named
//! `security-update-<UTC time>`: start a server with `--data` pointing at it to restore.

use std::path::PathBuf;

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
            std::fs::create_dir_all(into.parent().unwrap_or(&into))
                .map_err(|error| error.to_string())?;
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

/// `YYYYMMDDTHHMMSS.mmmZ`, from the system clock (civil-from-days, proleptic Gregorian).
fn timestamp() -> String {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = since.as_secs();
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rest = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}.{:03}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60,
        since.subsec_millis()
    )
}

/// Howard Hinnant's days-to-civil algorithm.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let month = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    #[test]
    fn civil_dates() {
        assert_eq!(super::civil_from_days(0), (1970, 1, 1));
        assert_eq!(super::civil_from_days(20_786), (2026, 11, 29));
        assert_eq!(super::civil_from_days(11_016), (2000, 2, 29));
    }
}
