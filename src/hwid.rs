//! hwid: built in the foundation issue.
