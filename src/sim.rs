//! (placeholder, filled in by the implementation)
