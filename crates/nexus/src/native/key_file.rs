//! The device key file: the 32 secret bytes, hex-encoded, in a file only its owner can
//! read (mode 0600 on Unix), written atomically (temporary file, fsync, rename).

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use nexus_core::{DeviceKey, KeyError};
use thiserror::Error;

const HEADER: &str = "nexus-device-key-v1";

/// Why the device key file could not be read or written.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum KeyFileError {
    /// Reading or writing the file failed.
    #[error("device key file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file does not hold a device key.
    #[error(
        "device key file {path} is not a Nexus device key ({reason}); restore it from a backup, or move it aside to create a new device identity"
    )]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: &'static str,
    },
    /// Others can read the file.
    #[error("device key file {path} can be read by other users (mode {mode:o}); run `chmod 600 {}`", path.display())]
    TooOpen {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// No randomness to create a key.
    #[error(transparent)]
    Key(#[from] KeyError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> KeyFileError + '_ {
    move |source| KeyFileError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Loads the device key at `path`, creating a new one if the file does not exist.
/// Returns the key and whether it was created.
pub fn load_or_create_key(path: &Path) -> Result<(DeviceKey, bool), KeyFileError> {
    match fs::read_to_string(path) {
        Ok(text) => {
            check_permissions(path)?;
            Ok((parse(path, &text)?, false))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = DeviceKey::generate()?;
            write(path, &key)?;
            Ok((key, true))
        }
        Err(e) => Err(io(path)(e)),
    }
}

fn parse(path: &Path, text: &str) -> Result<DeviceKey, KeyFileError> {
    let malformed = |reason| KeyFileError::Malformed {
        path: path.to_owned(),
        reason,
    };
    let mut lines = text.lines();
    if lines.next() != Some(HEADER) {
        return Err(malformed("missing header line"));
    }
    let hex = lines
        .next()
        .ok_or_else(|| malformed("missing key line"))?
        .trim();
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(malformed("the key line is not 64 hex digits"));
    }
    let mut secret = [0u8; 32];
    for (i, byte) in secret.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[i * 2..i * 2 + 2], 16)
            .map_err(|_| malformed("the key line is not hex"))?;
    }
    Ok(DeviceKey::from_secret_bytes(&secret))
}

fn write(path: &Path, key: &DeviceKey) -> Result<(), KeyFileError> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(io(dir))?;
    }
    let secret: String = key
        .secret_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let tmp = path.with_extension("tmp");
    // A file (or a link planted by someone else) left at the temporary path is removed,
    // not written through: the new file is created afresh, never following a link.
    match fs::symlink_metadata(&tmp) {
        Ok(_) => fs::remove_file(&tmp).map_err(io(&tmp))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(&tmp)(e)),
    }
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    // `create_new` is O_CREAT | O_EXCL: it fails on anything already there, a symbolic
    // link included (which it does not follow).
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file: File = options.open(&tmp).map_err(io(&tmp))?;
    file.write_all(format!("{HEADER}\n{secret}\n").as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(io(&tmp))?;
    fs::rename(&tmp, path).map_err(io(path))?;
    if let Some(dir) = path.parent()
        && let Ok(dir) = File::open(dir)
    {
        // Make the rename itself durable; a failure here only weakens crash safety.
        let _ = dir.sync_all();
    }
    Ok(())
}

#[cfg(unix)]
fn check_permissions(path: &Path) -> Result<(), KeyFileError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(path).map_err(io(path))?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyFileError::TooOpen {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_permissions(_path: &Path) -> Result<(), KeyFileError> {
    Ok(())
}
