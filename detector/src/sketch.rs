//! Distinct counting sketches (being written).
