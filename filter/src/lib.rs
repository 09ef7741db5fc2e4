//! Filter expressions (being written).
