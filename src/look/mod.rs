//! Read-only views: repos, tags, inspect, du.
