//! ACPI tables (acpi_tables crate) for a hardware-reduced machine: RSDP -> XSDT -> FADT (power
//! off and reset registers) and MADT (local APICs, IOAPIC); the DSDT names COM1, the i8042 and
//! every virtio-mmio device as `LNRO0005` with its window and interrupt, which is how the Debian
//! cloud kernel finds virtio-mmio devices.

use crate::devices::{i8042, power, pvpanic, serial};
use crate::layout;
use crate::VmmError;
use acpi_tables::aml;
use acpi_tables::fadt::{FADTBuilder, Flags};
use acpi_tables::gas::{AccessSize, AddressSpace, GAS};
use acpi_tables::madt::{EnabledStatus, IoApic, LocalInterruptController, ProcessorLocalApic, MADT};
use acpi_tables::rsdp::Rsdp;
use acpi_tables::sdt::Sdt;
use acpi_tables::xsdt::XSDT;
use acpi_tables::Aml;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

const OEM_ID: [u8; 6] = *b"DENVMM";
const OEM_TABLE: [u8; 8] = *b"DENVMM  ";
/// IAPC boot flags: 8042 present, no VGA, no CMOS RTC.
const BOOT_ARCH: u16 = (1 << 1) | (1 << 2) | (1 << 5);

/// A virtio-mmio device as the guest sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MmioSlot {
    /// Window base.
    pub base: u64,
    /// Window size.
    pub len: u64,
    /// Interrupt (GSI).
    pub gsi: u32,
}

/// AML already serialized.
struct Raw(Vec<u8>);

impl Aml for Raw {
    fn to_aml_bytes(&self, sink: &mut dyn acpi_tables::AmlSink) {
        sink.vec(&self.0);
    }
}

fn serialize(a: &dyn Aml) -> Raw {
    let mut v = Vec::new();
    a.to_aml_bytes(&mut v);
    Raw(v)
}

/// `Device(<name>) { _HID, _UID, _CRS }`.
fn device(name: &str, hid: &dyn Aml, uid: u32, resources: Vec<&dyn Aml>) -> Raw {
    let crs = aml::ResourceTemplate::new(resources);
    let (hid, uid, crs) =
        (aml::Name::new("_HID".into(), hid), aml::Name::new("_UID".into(), &uid), aml::Name::new("_CRS".into(), &crs));
    serialize(&aml::Device::new(name.into(), vec![&hid, &uid, &crs]))
}

fn edge_irq(gsi: u32) -> aml::Interrupt {
    aml::Interrupt::new(true, true, false, false, gsi)
}

fn dsdt(virtio: &[MmioSlot]) -> Vec<u8> {
    let (kbd_data, kbd_cmd) = (i8042::I8042_PORT, i8042::I8042_PORT + 4);
    let mut devices = vec![
        device(
            "COM1",
            &aml::EISAName::new("PNP0501"),
            0,
            vec![&aml::IO::new(serial::COM1, serial::COM1, 1, 8), &edge_irq(serial::COM1_GSI)],
        ),
        device(
            "PS2K",
            &aml::EISAName::new("PNP0303"),
            0,
            vec![
                &aml::IO::new(kbd_data, kbd_data, 1, 1),
                &aml::IO::new(kbd_cmd, kbd_cmd, 1, 1),
                &edge_irq(i8042::KBD_GSI),
            ],
        ),
        device("PEVT", &"QEMU0001", 0, vec![&aml::IO::new(pvpanic::PVPANIC_PORT, pvpanic::PVPANIC_PORT, 1, 1)]),
    ];
    for (i, s) in virtio.iter().enumerate() {
        let window = aml::Memory32Fixed::new(true, s.base as u32, s.len as u32);
        devices.push(device(&format!("V{i:03X}"), &"LNRO0005", i as u32, vec![&window, &edge_irq(s.gsi)]));
    }
    let sb = aml::Scope::new("_SB_".into(), devices.iter().map(|d| d as &dyn Aml).collect());
    let s5 = aml::Name::new("_S5_".into(), &aml::Package::new(vec![&power::S5_SLEEP_TYPE]));

    let mut table = Sdt::new(*b"DSDT", 36, 6, OEM_ID, OEM_TABLE, 1);
    table.append_slice(&serialize(&sb).0);
    table.append_slice(&serialize(&s5).0);
    table.as_slice().to_vec()
}

fn io_gas(port: u16) -> GAS {
    GAS::new(AddressSpace::SystemIo, 8, 0, AccessSize::ByteAccess, u64::from(port))
}

fn fadt(dsdt_addr: u64) -> Vec<u8> {
    let mut b = FADTBuilder::new(OEM_ID, OEM_TABLE, 1)
        .dsdt_64(dsdt_addr)
        .flag(Flags::HwReducedAcpi)
        .flag(Flags::ResetRegSup)
        .flag(Flags::PwrButton)
        .flag(Flags::SlpButton);
    b.iapc_boot_arch = BOOT_ARCH.into();
    b.sleep_control_reg = io_gas(power::POWER_PORT + power::SLEEP_CONTROL as u16);
    b.sleep_status_reg = io_gas(power::POWER_PORT + power::SLEEP_STATUS as u16);
    b.reset_reg = io_gas(power::POWER_PORT + power::RESET as u16);
    b.reset_value = power::RESET_VALUE;
    b.hypervisor_vendor_identity = u64::from_le_bytes(*b"DenVMM\0\0").into();
    let mut out = Vec::new();
    b.finalize().to_aml_bytes(&mut out);
    out
}

fn madt(cpus: u8) -> Vec<u8> {
    let mut m = MADT::new(OEM_ID, OEM_TABLE, 1, LocalInterruptController::Address(layout::LAPIC as u32));
    for i in 0..cpus {
        m.add_structure(ProcessorLocalApic::new(i, i, EnabledStatus::Enabled));
    }
    m.add_structure(IoApic::new(0, layout::IOAPIC as u32, 0));
    let mut out = Vec::new();
    m.to_aml_bytes(&mut out);
    out
}

/// Writes all tables from [`layout::RSDP`] on; returns where each one went, RSDP first.
pub fn write_tables(mem: &GuestMemoryMmap, cpus: u8, virtio: &[MmioSlot]) -> Result<Vec<(String, u64)>, VmmError> {
    let mut next = layout::RSDP + Rsdp::len() as u64;
    let mut placed = vec![];
    let mut put = |name: &str, bytes: &[u8], placed: &mut Vec<(String, u64)>| -> Result<u64, VmmError> {
        let addr = (next + 15) & !15;
        let end = addr + bytes.len() as u64;
        if end > layout::ACPI_END {
            return Err(VmmError::Memory(format!("ACPI {name} does not fit below {:#x}", layout::ACPI_END)));
        }
        mem.write_slice(bytes, GuestAddress(addr)).map_err(|e| VmmError::Memory(format!("ACPI {name}: {e}")))?;
        placed.push((name.to_string(), addr));
        next = end;
        Ok(addr)
    };
    let dsdt_addr = put("DSDT", &dsdt(virtio), &mut placed)?;
    let fadt_addr = put("FACP", &fadt(dsdt_addr), &mut placed)?;
    let madt_addr = put("APIC", &madt(cpus), &mut placed)?;
    let mut xsdt = XSDT::new(OEM_ID, OEM_TABLE, 1);
    xsdt.add_entry(fadt_addr);
    xsdt.add_entry(madt_addr);
    let mut xb = Vec::new();
    xsdt.to_aml_bytes(&mut xb);
    let xsdt_addr = put("XSDT", &xb, &mut placed)?;
    let mut rb = Vec::new();
    Rsdp::new(OEM_ID, xsdt_addr).to_aml_bytes(&mut rb);
    mem.write_slice(&rb, GuestAddress(layout::RSDP)).map_err(|e| VmmError::Memory(format!("RSDP: {e}")))?;
    placed.insert(0, ("RSDP".into(), layout::RSDP));
    Ok(placed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checksum_ok(b: &[u8]) -> bool {
        b.iter().fold(0u8, |a, x| a.wrapping_add(*x)) == 0
    }

    #[test]
    fn tables_are_linked_and_checksummed() {
        let mem: GuestMemoryMmap = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 2 << 20)]).unwrap();
        let slots = [MmioSlot { base: layout::VIRTIO_MMIO_BASE, len: 0x1000, gsi: 5 }];
        let placed = write_tables(&mem, 2, &slots).unwrap();
        let mut rsdp = [0u8; 36];
        mem.read_slice(&mut rsdp, GuestAddress(layout::RSDP)).unwrap();
        assert_eq!(&rsdp[..8], b"RSD PTR ");
        assert!(checksum_ok(&rsdp[..20]) && checksum_ok(&rsdp));
        let xsdt_addr = u64::from_le_bytes(rsdp[24..32].try_into().unwrap());
        for (name, addr) in &placed[1..] {
            let mut hdr = [0u8; 8];
            mem.read_slice(&mut hdr, GuestAddress(*addr)).unwrap();
            assert_eq!(&hdr[..4], name.as_bytes());
            let len = u32::from_le_bytes(hdr[4..8].try_into().unwrap()) as usize;
            let mut t = vec![0u8; len];
            mem.read_slice(&mut t, GuestAddress(*addr)).unwrap();
            assert!(checksum_ok(&t), "{name} checksum");
            if name == "DSDT" {
                let find = |needle: &[u8]| t.windows(needle.len()).any(|w| w == needle);
                assert!(find(b"LNRO0005") && find(b"_S5_") && find(b"PS2K") && find(b"QEMU0001"));
            }
        }
        assert_eq!(placed.iter().find(|(n, _)| n == "XSDT").map(|p| p.1), Some(xsdt_addr));
    }
}
