//! The allocator: size classes, spans carved from aligned segments, per-(thread, group)
//! heaps and large mappings. Every page run is charged to a group through the accounting
//! engine's three verbs: `try_charge`, commit (the span records its group), `uncharge`.

pub mod size_class;
