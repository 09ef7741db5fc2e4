//! Network interface lookups shared by the live sources and the XDP loader.

use std::ffi::{CStr, CString};
use std::io;

/// The interface name as a C string that fits `ifreq.ifr_name` (1 to `IFNAMSIZ - 1` bytes,
/// no NUL).
///
/// # Errors
/// `InvalidInput` saying what is wrong with the name.
pub fn c_name(interface: &str) -> io::Result<CString> {
    if interface.is_empty() || interface.len() >= libc::IFNAMSIZ {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "interface names are 1 to {} bytes long, this one has {}",
                libc::IFNAMSIZ - 1,
                interface.len()
            ),
        ));
    }
    CString::new(interface)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "interface name contains a NUL byte"))
}

/// The index of interface `name` in the calling thread's network namespace.
///
/// # Errors
/// The OS error of `if_nametoindex` (`ENODEV`: no such interface).
pub fn index(name: &CStr) -> io::Result<u32> {
    // SAFETY: `name` is a NUL-terminated string that outlives the call.
    match unsafe { libc::if_nametoindex(name.as_ptr()) } {
        0 => Err(io::Error::last_os_error()),
        i => Ok(i),
    }
}

/// Number of receive queues of an interface (from `/sys/class/net/IF/queues`), at least 1.
#[must_use]
pub fn rx_queue_count(interface: &str) -> u32 {
    std::fs::read_dir(format!("/sys/class/net/{interface}/queues"))
        .map(|d| {
            d.filter_map(Result::ok).filter(|e| e.file_name().to_string_lossy().starts_with("rx-")).count()
        })
        .ok()
        .and_then(|n| u32::try_from(n).ok())
        .unwrap_or(1)
        .max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_must_fit_ifreq() {
        assert!(c_name("a-name-of-16-byt").is_err());
        assert!(c_name("").is_err());
        assert!(c_name("eth\0").is_err());
        assert!(c_name("eth0").is_ok());
    }
}
