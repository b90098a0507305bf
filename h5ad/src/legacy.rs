//! The legacy dataframe encoding (anndata 0.6 / dataframe 0.1.0): a
//! categorical column is a dataset of codes whose `categories` attribute is an
//! object reference to `<frame>/__categories/<column>`, and that dataset
//! carries the `ordered` attribute.

use rust_hdf5::H5File;

use crate::array::Array;
use crate::attrs::{Attrs, Meta};
use crate::categories;
use crate::column::Categorical;
use crate::error::{H5adError, Loc};

/// Where legacy files keep category lists, inside the dataframe group.
const CATEGORIES_GROUP: &str = "__categories";

/// The categorical whose codes are the dataset at `codes`.
pub(crate) fn categorical(
    file: &H5File,
    meta: &Meta,
    frame: &Loc,
    codes: Loc,
    attrs: &Attrs,
) -> Result<Categorical, H5adError> {
    let target = categories_loc(meta, frame, &codes, attrs)?;
    let ordered = meta.attrs(&target)?.flag("ordered")?.unwrap_or(false);
    let categories = categories::read(file, meta, target)?;
    Categorical::new(Array::open_1d(file, codes)?, categories, ordered)
}

/// Follows the `categories` object reference into `__categories`.
fn categories_loc(meta: &Meta, frame: &Loc, codes: &Loc, attrs: &Attrs) -> Result<Loc, H5adError> {
    let bad = |problem: String| codes.invalid(format!("attribute 'categories': {problem}"));
    let attr = attrs
        .get("categories")
        .ok_or_else(|| codes.missing("attribute 'categories'"))?;
    let references = meta.references(attr).map_err(|e| bad(e.to_string()))?;
    let [address] = references.as_slice() else {
        return Err(bad(format!(
            "{} references, expected one",
            references.len()
        )));
    };
    let group = frame.child(CATEGORIES_GROUP);
    let name = meta
        .child_at(&group, *address)?
        .ok_or_else(|| bad(format!("points to no dataset in {}", group.object())))?;
    Ok(group.child(&name))
}
