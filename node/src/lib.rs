//! The Yimen node shell: what every tier runs around the pure core.
