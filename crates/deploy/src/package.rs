//! The Lambda package: a zip with the `bootstrap` executable at its root, for the
//! `provided.al2023` runtime ("Building Lambda functions with Rust" and "OS-only runtimes",
//! Lambda Developer Guide: the runtime runs the file named `bootstrap` in the package root).
//!
//! [`check_bootstrap`] refuses a binary that would fail on the first invocation: not an ELF
//! executable, built for another architecture, or needing a glibc newer than the 2.34 that
//! Amazon Linux 2023 ships ("Amazon Linux 2023 release notes": glibc 2.34).
//!
//! The zip is deterministic (fixed timestamp, one entry), so the same binary always gives the
//! same bytes and the same content-addressed S3 key: re-deploying an unchanged function
//! uploads nothing and changes nothing.

use std::io::Write as _;

use object::elf;
use object::read::elf::{Dyn as _, ElfFile64, FileHeader as _, ProgramHeader as _};
use object::{Endianness, FileKind};

use crate::options::Arch;

/// The newest glibc Amazon Linux 2023 provides.
pub const AL2023_GLIBC: (u32, u32) = (2, 34);

/// What the check found out about a binary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootstrapInfo {
    pub arch: Arch,
    /// The newest `GLIBC_x.y` symbol version the binary needs (None: no glibc, e.g. static).
    pub newest_glibc: Option<(u32, u32)>,
}

/// Why a binary cannot be the function's `bootstrap`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PackageError {
    #[error("{0}: not an ELF file (build the Lambda for Linux: scripts/build-lambda)")]
    NotElf(String),
    #[error("{0}: a 32-bit or unreadable ELF file: {1}")]
    BadElf(String, String),
    #[error("{path}: an ELF {kind}, not an executable (build the `bootstrap` binary)")]
    NotExecutable { path: String, kind: String },
    #[error(
        "{path}: built for {found}, but the function runs on {wanted} (pass --arch {found_arch} or build for {target})"
    )]
    WrongArch {
        path: String,
        found: String,
        found_arch: String,
        wanted: String,
        target: String,
    },
    #[error(
        "{path}: needs GLIBC_{}.{} but Amazon Linux 2023 has glibc {}.{}; build on an older glibc or for a musl target",
        needed.0, needed.1, AL2023_GLIBC.0, AL2023_GLIBC.1
    )]
    GlibcTooNew { path: String, needed: (u32, u32) },
    #[error("cannot write the zip: {0}")]
    Zip(String),
}

/// Checks that `data` (the file `path`) can run as a `provided.al2023` bootstrap on `arch`.
pub fn check_bootstrap(path: &str, data: &[u8], arch: Arch) -> Result<BootstrapInfo, PackageError> {
    let bad = |e: object::read::Error| PackageError::BadElf(path.to_owned(), e.to_string());
    match FileKind::parse(data) {
        Ok(FileKind::Elf64) => {}
        Ok(FileKind::Elf32) => {
            return Err(PackageError::BadElf(path.to_owned(), "32-bit ELF".into()));
        }
        _ => return Err(PackageError::NotElf(path.to_owned())),
    }
    let file = ElfFile64::<Endianness>::parse(data).map_err(bad)?;
    let endian = file.endian();
    let header = file.elf_header();
    let found = match header.e_machine(endian) {
        elf::EM_X86_64 => Some(Arch::X86_64),
        elf::EM_AARCH64 => Some(Arch::Arm64),
        _ => None,
    };
    // An executable: ET_EXEC, or a position-independent executable (ET_DYN with an
    // interpreter, or flagged DF_1_PIE when static-pie), never a shared library.
    let e_type = header.e_type(endian);
    let has_interpreter = file
        .elf_program_headers()
        .iter()
        .any(|p| p.p_type(endian) == elf::PT_INTERP);
    let pie_flag = file
        .elf_program_headers()
        .iter()
        .filter_map(|p| p.dynamic(endian, data).ok().flatten())
        .flatten()
        .any(|d| d.d_tag(endian) == elf::DT_FLAGS_1 && d.d_val(endian) & elf::DF_1_PIE.0 != 0);
    let executable =
        e_type == elf::ET_EXEC || (e_type == elf::ET_DYN && (has_interpreter || pie_flag));
    if !executable {
        let kind = match e_type {
            elf::ET_REL => "relocatable object",
            elf::ET_DYN => "shared library",
            elf::ET_CORE => "core dump",
            _ => "file of unknown type",
        };
        return Err(PackageError::NotExecutable {
            path: path.to_owned(),
            kind: kind.into(),
        });
    }
    if found != Some(arch) {
        let found_name = match found {
            Some(a) => a.as_str().to_owned(),
            None => format!("machine {}", header.e_machine(endian)),
        };
        return Err(PackageError::WrongArch {
            path: path.to_owned(),
            found_arch: found.map(Arch::as_str).unwrap_or("?").to_owned(),
            found: found_name,
            wanted: arch.as_str().to_owned(),
            target: arch.rust_target().to_owned(),
        });
    }
    let newest_glibc = newest_glibc(&file, data).map_err(bad)?;
    if let Some(needed) = newest_glibc
        && needed > AL2023_GLIBC
    {
        return Err(PackageError::GlibcTooNew {
            path: path.to_owned(),
            needed,
        });
    }
    Ok(BootstrapInfo { arch, newest_glibc })
}

/// The newest `GLIBC_x.y[.z]` version the binary's version-needs section asks for.
fn newest_glibc(
    file: &ElfFile64<'_, Endianness>,
    data: &[u8],
) -> Result<Option<(u32, u32)>, object::read::Error> {
    let endian = file.endian();
    let sections = file.elf_section_table();
    let Some((mut needs, link)) = sections.gnu_verneed(endian, data)? else {
        return Ok(None);
    };
    let strings = sections.strings(endian, data, link)?;
    let mut newest = None;
    while let Some((_, mut aux)) = needs.next()? {
        while let Some(entry) = aux.next()? {
            let name = entry.name(endian, strings)?;
            if let Some(version) = glibc_version(name) {
                newest = newest.max(Some(version));
            }
        }
    }
    Ok(newest)
}

/// `GLIBC_2.34` → (2, 34); other version names (GLIBC_PRIVATE, GCC_3.0) → None.
fn glibc_version(name: &[u8]) -> Option<(u32, u32)> {
    let text = std::str::from_utf8(name.strip_prefix(b"GLIBC_")?).ok()?;
    let mut parts = text.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// The deployment zip: `bootstrap` at the root, mode 0755, a fixed timestamp.
pub fn zip_bootstrap(bootstrap: &[u8]) -> Result<Vec<u8>, PackageError> {
    let zip_error = |e: zip::result::ZipError| PackageError::Zip(e.to_string());
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .unix_permissions(0o755)
        .last_modified_time(zip::DateTime::default());
    writer.start_file("bootstrap", options).map_err(zip_error)?;
    writer
        .write_all(bootstrap)
        .map_err(|e| PackageError::Zip(e.to_string()))?;
    Ok(writer.finish().map_err(zip_error)?.into_inner())
}

/// The S3 key of a package: its content's hash (FNV-1a, 64 bits), so an unchanged package has
/// an unchanged key and the stack an unchanged `FunctionCodeKey`.
pub fn package_key(zip: &[u8]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in zip {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("fleetprep/lambda/bootstrap-{hash:016x}-{}.zip", zip.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glibc_versions_are_read_from_version_names() {
        assert_eq!(glibc_version(b"GLIBC_2.34"), Some((2, 34)));
        assert_eq!(glibc_version(b"GLIBC_2.2.5"), Some((2, 2)));
        assert_eq!(glibc_version(b"GLIBC_PRIVATE"), None);
        assert_eq!(glibc_version(b"GCC_3.0"), None);
        assert!((2, 35) > AL2023_GLIBC && (2, 17) < AL2023_GLIBC);
    }

    #[test]
    fn text_is_not_elf() {
        assert_eq!(
            check_bootstrap("bootstrap", b"#!/bin/sh\necho hi\n", Arch::X86_64),
            Err(PackageError::NotElf("bootstrap".into()))
        );
    }

    #[test]
    fn the_zip_is_deterministic_and_holds_an_executable_bootstrap() {
        let first = zip_bootstrap(b"\x7fELF fake").unwrap();
        let second = zip_bootstrap(b"\x7fELF fake").unwrap();
        assert_eq!(first, second);
        assert_eq!(package_key(&first), package_key(&second));
        assert_ne!(
            package_key(&first),
            package_key(&zip_bootstrap(b"other").unwrap())
        );
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(first)).unwrap();
        assert_eq!(archive.len(), 1);
        let entry = archive.by_index(0).unwrap();
        assert_eq!(entry.name(), "bootstrap");
        assert_eq!(entry.unix_mode().map(|m| m & 0o777), Some(0o755));
    }
}
