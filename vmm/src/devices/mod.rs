//! Device models. Each one owns its state machine and is driven by the exit loop; none of them
//! trusts a value the guest wrote.

pub mod bus;
pub mod debug_port;
pub mod i8042;
pub mod irq;
pub mod power;
pub mod pvpanic;
pub mod serial;
pub mod virtio;
