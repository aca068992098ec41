//! host: built in the foundation issue.
