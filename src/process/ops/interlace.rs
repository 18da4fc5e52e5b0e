//! `interlace,<0|1>` (spec §4.14): progressive JPEG output; ignored for other formats.

use crate::process::parse::Args;
use crate::process::ProcessError;

/// Parses `interlace,<0|1>` into "progressive".
pub(crate) fn parse_args(a: &Args<'_>) -> Result<bool, ProcessError> {
    let v = a.single(None)?;
    match v {
        "0" => Ok(false),
        "1" => Ok(true),
        _ => Err(ProcessError::invalid("interlace", v, "Value must be 0 or 1", None)),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    #[test]
    fn values() {
        let p = |s: &str| parse_args(&Args::new("interlace", s.split(',').filter(|t| !t.is_empty())));
        assert_eq!(p("1"), Ok(true));
        assert_eq!(p("0"), Ok(false));
        assert!(p("2").is_err() && p("").is_err());
        assert_eq!(p("1,0").unwrap_err().ec(), Some("0040-00000203"));
    }
}
