//! Starting the real `security-update-server` binary and talking to it.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::process::PATIENCE;

/// The binary under test: the one cargo built for these tests, or another build of the same
/// source named by `SECURITY_UPDATE_SERVER_BINARY` (`scripts/pgo_build.sh` runs these tests
/// against its profile-guided build).
fn binary() -> String {
    let Ok(path) = std::env::var("SECURITY_UPDATE_SERVER_BINARY") else {
        return env!("CARGO_BIN_EXE_security-update-server").to_owned();
    };
    // Tests run in the package's directory, not the caller's: a relative path would name
    // another file than the one meant.
    assert!(
        Path::new(&path).is_absolute(),
        "SECURITY_UPDATE_SERVER_BINARY must be an absolute path: {path}"
    );
    eprintln!("testing {path} (SECURITY_UPDATE_SERVER_BINARY)");
    path
}

/// A running server process, killed when dropped.
pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    /// Everything printed on stdout up to and including "listening on ...".
    pub banner: Vec<String>,
    pub log: PathBuf,
}

impl Server {
    /// Starts the binary with `args` (plus `--listen :0`), logging to `log_dir`, and waits for
    /// "listening on".
    pub fn start(args: &[&str], log_dir: &Path) -> Self {
        Self::try_start(args, log_dir).unwrap_or_else(|(status, log)| {
            panic!("server exited with {status:?} before listening; stderr:\n{log}")
        })
    }

    /// Like `start`, with the open-file limit (soft and hard) set to `limit` first.
    pub fn start_with_open_files(limit: u32, args: &[&str], log_dir: &Path) -> Self {
        Self::try_start_with(Some(limit), args, log_dir).unwrap_or_else(|(status, log)| {
            panic!("server exited with {status:?} before listening; stderr:\n{log}")
        })
    }

    /// Like `start`, but an early exit is returned with the server's stderr.
    pub fn try_start(args: &[&str], log_dir: &Path) -> Result<Self, (Option<ExitStatus>, String)> {
        Self::try_start_with(None, args, log_dir)
    }

    fn try_start_with(
        open_files: Option<u32>,
        args: &[&str],
        log_dir: &Path,
    ) -> Result<Self, (Option<ExitStatus>, String)> {
        let log = log_dir.join(format!(
            "server-{}.log",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let binary = binary();
        let mut command = match open_files {
            None => Command::new(&binary),
            Some(limit) => {
                let mut command = Command::new("sh");
                command.args([
                    "-c",
                    &format!("ulimit -n {limit} && exec \"$0\" \"$@\""),
                    &binary,
                ]);
                command
            }
        };
        let mut child = command
            .args(["--listen", ":0"])
            .args(args)
            .env("RUST_LOG", "info,security_update_server=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("the server binary runs");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut lines = Vec::new();
            loop {
                let mut line = String::new();
                match reader.read_line(&mut line) {
                    Ok(0) | Err(_) => {
                        let _ = tx.send(Err(lines));
                        return;
                    }
                    Ok(_) => {
                        let done = line.starts_with("listening on ");
                        lines.push(line.trim_end().to_owned());
                        if done {
                            let _ = tx.send(Ok(lines));
                            // Keep draining so the server never blocks on a full pipe.
                            let _ = std::io::copy(&mut reader, &mut std::io::sink());
                            return;
                        }
                    }
                }
            }
        });
        match rx.recv_timeout(PATIENCE) {
            Ok(Ok(banner)) => {
                let addr = banner
                    .last()
                    .unwrap()
                    .trim_start_matches("listening on ")
                    .parse()
                    .unwrap();
                Ok(Self {
                    child,
                    addr,
                    banner,
                    log,
                })
            }
            Ok(Err(_)) | Err(_) => {
                let status = wait_with_timeout(&mut child, PATIENCE);
                Err((status, std::fs::read_to_string(&log).unwrap_or_default()))
            }
        }
    }

    /// The dev-mode token printed in the banner.
    pub fn dev_token(&self) -> String {
        self.banner
            .iter()
            .find(|line| line.starts_with("eyJ"))
            .expect("a dev-mode token in the banner")
            .clone()
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log contains `needle`.
    pub fn wait_for_log(&self, needle: &str) {
        let deadline = Instant::now() + PATIENCE;
        while !self.logs().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "no {needle:?} in the log:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([format!("-{signal}"), self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit.
    pub fn wait(&mut self) -> ExitStatus {
        wait_with_timeout(&mut self.child, PATIENCE).expect("the server exits")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_with_timeout(child: &mut Child, patience: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + patience;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Runs the binary to completion (for flag errors), returning (exit code, stdout, stderr).
pub fn run_to_exit(args: &[&str]) -> (Option<i32>, String, String) {
    let mut child = Command::new(binary())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_with_timeout(&mut child, PATIENCE);
    let mut out = String::new();
    let mut err = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (status.and_then(|s| s.code()), out, err)
}
