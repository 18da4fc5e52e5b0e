//! `auto-orient,<0|1>` (spec §4.7, §2.3): a setting, not a step. The EXIF orientation is
//! applied to the decoded source before the first operation wherever the op appears;
//! [decision] it is on by default whenever `x-oss-process` is present, `auto-orient,0`
//! turns it off.

use crate::process::parse::Args;
use crate::process::ProcessError;

/// Parses `auto-orient,<0|1>` into "apply the orientation".
pub(crate) fn parse_args(a: &Args<'_>) -> Result<bool, ProcessError> {
    let v = a.single(Some("0040-00000215"))?;
    match v {
        "0" => Ok(false),
        "1" => Ok(true),
        _ => Err(ProcessError::invalid("auto-orient", v, "Value must be 0 or 1", Some("0040-00000215"))),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    #[test]
    fn values() {
        let p = |s: &str| parse_args(&Args::new("auto-orient", s.split(',').filter(|t| !t.is_empty())));
        assert_eq!(p("0"), Ok(false));
        assert_eq!(p("1"), Ok(true));
        assert_eq!(p("abc").unwrap_err().ec(), Some("0040-00000215"));
        assert_eq!(p("10").unwrap_err().ec(), Some("0040-00000215"));
        assert_eq!(p("1,1").unwrap_err().ec(), Some("0040-00000203"));
    }
}
