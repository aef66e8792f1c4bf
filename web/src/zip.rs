//! A ZIP archive of stored (uncompressed) files, so the page hands the visitor one download:
//! the adapter directory as `afinador train` writes it, and the run's metrics.
//!
//! Layout (PKWARE APPNOTE 6.3.x, §4.3): for each file a local header and its bytes, then the
//! central directory and its end record. Stored entries (method 0), CRC-32 of each file, UTF-8
//! names (flag bit 11), no ZIP64 (each file and the archive stay under 4 GiB; an adapter is a
//! few MB).

/// CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320), as ZIP stores it.
pub fn crc32(bytes: &[u8]) -> u32 {
    let table: [u32; 256] = std::array::from_fn(|i| {
        (0..8).fold(i as u32, |c, _| {
            if c & 1 == 1 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            }
        })
    });
    !bytes.iter().fold(!0u32, |c, &b| {
        table[((c ^ u32::from(b)) & 0xFF) as usize] ^ (c >> 8)
    })
}

/// The archive of `files` (name → bytes), in order. Names use `/` for folders.
pub fn stored_zip(files: &[(&str, &[u8])]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    for (name, data) in files {
        let (size, offset) = (u32_of(data.len(), name)?, u32_of(out.len(), name)?);
        let crc = crc32(data);
        let name_len = u16::try_from(name.len()).map_err(|_| format!("{name}: name too long"))?;
        // Version 2.0, UTF-8 names, stored, no time (1980-01-01).
        let common = |v: &mut Vec<u8>| {
            v.extend_from_slice(&20u16.to_le_bytes()); // version needed
            v.extend_from_slice(&0x0800u16.to_le_bytes()); // flags: UTF-8
            v.extend_from_slice(&0u16.to_le_bytes()); // method: stored
            v.extend_from_slice(&0u16.to_le_bytes()); // time
            v.extend_from_slice(&0x0021u16.to_le_bytes()); // date 1980-01-01
            v.extend_from_slice(&crc.to_le_bytes());
            v.extend_from_slice(&size.to_le_bytes()); // compressed
            v.extend_from_slice(&size.to_le_bytes()); // uncompressed
            v.extend_from_slice(&name_len.to_le_bytes());
            v.extend_from_slice(&0u16.to_le_bytes()); // extra length
        };
        out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        common(&mut out);
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(data);

        central.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        central.extend_from_slice(&20u16.to_le_bytes()); // version made by
        common(&mut central);
        central.extend_from_slice(&[0; 6]); // comment length, disk, internal attributes
        central.extend_from_slice(&0u32.to_le_bytes()); // external attributes
        central.extend_from_slice(&offset.to_le_bytes());
        central.extend_from_slice(name.as_bytes());
    }
    let count = u16::try_from(files.len()).map_err(|_| "too many files".to_string())?;
    let (cd_size, cd_offset) = (u32_of(central.len(), "")?, u32_of(out.len(), "")?);
    out.extend_from_slice(&central);
    out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    out.extend_from_slice(&[0; 4]); // disk numbers
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&cd_size.to_le_bytes());
    out.extend_from_slice(&cd_offset.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes()); // comment length
    Ok(out)
}

fn u32_of(n: usize, what: &str) -> Result<u32, String> {
    u32::try_from(n).map_err(|_| format!("{what}: over 4 GiB, more than a ZIP without ZIP64 holds"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn python_zipfile_reads_the_archive_back() {
        let gguf: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
        let zip = stored_zip(&[
            ("adapter/adapter_config.json", br#"{"r": 16}"#),
            ("adapter/adapter.gguf", &gguf),
            ("metrics.jsonl", b"{\"step\": 1}\n"),
        ])
        .unwrap();
        let path = std::env::temp_dir().join(format!("afinador-zip-{}.zip", std::process::id()));
        std::fs::write(&path, &zip).unwrap();
        // An independent reader: Python's zipfile checks every CRC in testzip().
        let script = "import sys, zipfile, hashlib\n\
                      z = zipfile.ZipFile(sys.argv[1])\n\
                      assert z.testzip() is None\n\
                      for i in z.infolist():\n\
                      \x20   print(i.filename, i.file_size, hashlib.sha256(z.read(i)).hexdigest())";
        let out = std::process::Command::new("python3")
            .args(["-c", script, path.to_str().unwrap()])
            .output()
            .expect("python3");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let listing = String::from_utf8(out.stdout).unwrap();
        let lines: Vec<&str> = listing.lines().collect();
        assert_eq!(lines.len(), 3, "{listing}");
        assert!(lines[0].starts_with("adapter/adapter_config.json 9 "));
        assert!(lines[1].starts_with("adapter/adapter.gguf 70000 "));
        assert!(lines[2].starts_with("metrics.jsonl 12 "));
    }
}
