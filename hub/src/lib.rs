//! The Yimen hub: what only township, county and city hubs do.
