//! Flow export (being written).
