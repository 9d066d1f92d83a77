//! Secrets that must not be written into the config file: read from a file
//! (`password_file`, `oauth_token_file`) or printed by a command
//! (`oauth_token_command`, e.g. a token refresher for Gmail / Microsoft 365).
//! Shared by the IMAP and SMTP settings; never logs what it reads.

use std::io;
use std::path::Path;

/// Why a secret could not be had.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The file or the command could not be read or run.
    #[error("cannot read it")]
    Io(#[from] io::Error),
    /// The token command ran and exited unsuccessfully.
    #[error("token command failed ({status})")]
    CommandFailed { status: String },
    /// The file or the command's output was empty.
    #[error("it is empty")]
    Empty,
}

impl From<SecretError> for io::Error {
    fn from(err: SecretError) -> io::Error {
        match err {
            SecretError::Io(err) => err,
            SecretError::Empty => io::Error::new(io::ErrorKind::InvalidData, "empty"),
            other => io::Error::other(other.to_string()),
        }
    }
}

/// The content of a secret file, without its trailing line break.
pub async fn read_file(path: &Path) -> Result<String, SecretError> {
    let text = tokio::fs::read_to_string(path).await?;
    non_empty(text.trim_end_matches(['\r', '\n']).to_owned())
}

/// What `sh -c command` prints, trimmed; it must exit successfully.
pub async fn run_command(command: &str) -> Result<String, SecretError> {
    let output = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(std::process::Stdio::null())
        .output()
        .await?;
    if !output.status.success() {
        return Err(SecretError::CommandFailed {
            status: output.status.to_string(),
        });
    }
    non_empty(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

fn non_empty(secret: String) -> Result<String, SecretError> {
    if secret.is_empty() {
        Err(SecretError::Empty)
    } else {
        Ok(secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_command_gives_its_trimmed_output_and_fails_on_a_bad_exit_or_no_output() {
        assert_eq!(run_command("echo ' tok '").await.unwrap(), "tok");
        assert!(matches!(
            run_command("exit 3").await,
            Err(SecretError::CommandFailed { .. })
        ));
        assert!(matches!(run_command("true").await, Err(SecretError::Empty)));
    }

    #[tokio::test]
    async fn a_file_loses_only_its_trailing_line_break() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        std::fs::write(&path, "s3 cret\r\n").unwrap();
        assert_eq!(read_file(&path).await.unwrap(), "s3 cret");
        std::fs::write(&path, "\n").unwrap();
        assert!(matches!(read_file(&path).await, Err(SecretError::Empty)));
    }
}
