//! Intel address lists (being written).
