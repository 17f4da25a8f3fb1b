//! Update masks (AIP-134): the paths a caller named, or, without a mask,
//! the fields the caller set.

use super::Error;

/// `mask` as given, or the paths of `fields` that are set when it is empty.
/// INVALID_ARGUMENT when that leaves nothing to update.
pub fn effective_paths(mask: Vec<String>, fields: &[(&str, bool)]) -> Result<Vec<String>, Error> {
    let paths = if mask.is_empty() {
        fields
            .iter()
            .filter(|(_, set)| *set)
            .map(|(path, _)| (*path).to_owned())
            .collect()
    } else {
        mask
    };
    if paths.is_empty() {
        return Err(Error::invalid(
            "update_mask",
            "nothing to update: set a field or an update_mask",
        ));
    }
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_wins_else_set_fields() {
        assert_eq!(effective_paths(vec!["b".into()], &[("a", true)]).unwrap(), ["b"]);
        assert_eq!(effective_paths(vec![], &[("a", true), ("b", false)]).unwrap(), ["a"]);
        assert!(effective_paths(vec![], &[("a", false)]).is_err());
    }
}
