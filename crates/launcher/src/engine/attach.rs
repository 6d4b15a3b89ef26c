//! An interactive session in the agent: `docker exec -it` over bollard,
//! with the local terminal in raw mode (so Ctrl-C goes to the agent, not to
//! the launcher), the window size passed on at start and on every resize
//! (SIGWINCH), and the terminal restored on every exit path.
//!
//! Is not: a terminal emulator. Bytes flow unchanged in both directions.

use std::io::Write as _;

use bollard::exec::{CreateExecOptions, ResizeExecOptions, StartExecOptions, StartExecResults};
use futures_util::StreamExt as _;
use tokio::io::AsyncWriteExt as _;

use crate::engine::docker::{DockerError, Engine};

/// Restores the terminal when dropped (also on panic and early return).
struct RawMode;

impl RawMode {
    fn enable() -> std::io::Result<Self> {
        crossterm::terminal::enable_raw_mode()?;
        Ok(Self)
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = crossterm::terminal::disable_raw_mode();
    }
}

/// Why the session failed.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    /// A Docker call failed.
    #[error(transparent)]
    Docker(#[from] DockerError),
    /// The local terminal could not be switched to raw mode.
    #[error("switching the terminal to raw mode: {0}")]
    Terminal(std::io::Error),
}

/// Runs `cmd` in `container` as `user` on a TTY attached to this terminal;
/// returns its exit code when it ends.
pub async fn interactive(
    engine: &Engine,
    container: &str,
    user: &str,
    cmd: &[String],
) -> Result<Option<i64>, AttachError> {
    let docker = engine.client();
    let err = |source| DockerError::Exec {
        name: container.to_owned(),
        cmd: cmd.join(" "),
        source,
    };
    let term = std::env::var("TERM").unwrap_or_else(|_| "xterm-256color".into());
    let created = docker
        .create_exec(
            container,
            CreateExecOptions {
                cmd: Some(cmd.to_vec()),
                user: Some(user.to_owned()),
                env: Some(vec![format!("TERM={term}")]),
                attach_stdin: Some(true),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                tty: Some(true),
                ..Default::default()
            },
        )
        .await
        .map_err(err)?;
    let started = docker
        .start_exec(
            &created.id,
            Some(StartExecOptions {
                detach: false,
                tty: true,
                output_capacity: None,
            }),
        )
        .await
        .map_err(err)?;
    let StartExecResults::Attached {
        mut output,
        mut input,
    } = started
    else {
        return Ok(None);
    };
    let _raw = RawMode::enable().map_err(AttachError::Terminal)?;

    let resize = |id: String| async move {
        if let Ok((width, height)) = crossterm::terminal::size() {
            let _ = engine
                .client()
                .resize_exec(&id, ResizeExecOptions { width, height })
                .await;
        }
    };
    resize(created.id.clone()).await;
    let mut winch =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change()).ok();

    // stdin → exec. A blocking read cannot be cancelled, so it runs on a
    // plain thread that ends with the process; a task forwards its chunks.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(16);
    std::thread::spawn(move || {
        use std::io::Read as _;
        let mut stdin = std::io::stdin();
        let mut buf = [0u8; 4096];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx.blocking_send(buf[..n].to_vec()).is_err() {
                        break;
                    }
                }
            }
        }
    });
    let stdin_task = tokio::spawn(async move {
        while let Some(chunk) = rx.recv().await {
            if input.write_all(&chunk).await.is_err() || input.flush().await.is_err() {
                break;
            }
        }
    });

    let mut stdout = std::io::stdout();
    loop {
        tokio::select! {
            chunk = output.next() => match chunk {
                Some(Ok(c)) => {
                    let _ = stdout.write_all(&c.into_bytes());
                    let _ = stdout.flush();
                }
                Some(Err(_)) | None => break,
            },
            Some(()) = async { match winch.as_mut() { Some(w) => w.recv().await, None => std::future::pending().await } } => {
                resize(created.id.clone()).await;
            }
        }
    }
    stdin_task.abort();
    drop(_raw);
    let code = docker
        .inspect_exec(&created.id)
        .await
        .map_err(err)?
        .exit_code;
    Ok(code)
}
