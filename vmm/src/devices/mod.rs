//! Device models. Each one owns its state machine and is driven by the exit loop; none of them
//! trusts a value the guest wrote.

pub mod serial;
