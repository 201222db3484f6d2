//! Random identifiers from the operating system's generator (stream
//! epochs, board tokens). Secrets (the board's token and session cookies)
//! never fall back to guessable entropy: without the OS generator there is
//! an error to report. The one fallback is the stream epoch of an outbox
//! already running from memory (`SeqFile::memory`: the state directory
//! cannot be written, a technical alarm): an epoch must only differ from
//! the last run's, not be secret, so there the clock stands in, with a
//! warning in the log, rather than vigil not publishing at all.

/// The OS generator failed (its error says how).
#[derive(Debug, thiserror::Error)]
#[error("the operating system's random generator is not available ({0})")]
pub struct RandomError(getrandom::Error);

/// `bytes` random bytes as lowercase hex (`2 * bytes` characters).
pub fn hex(bytes: usize) -> Result<String, RandomError> {
    let mut b = vec![0u8; bytes];
    getrandom::getrandom(&mut b).map_err(RandomError)?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_have_the_asked_length_and_differ() {
        let a = super::hex(8).unwrap();
        let b = super::hex(8).unwrap();
        assert_eq!(a.len(), 16);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
