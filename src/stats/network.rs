//! A network namespace's interface counters, from `/proc/<pid>/net/dev` of any
//! process inside it: no setns, no thread, one small file.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceUsage {
    pub name: String,
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub rx_errors: u64,
    pub rx_dropped: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_errors: u64,
    pub tx_dropped: u64,
}

/// Every interface but loopback, in the file's order.
pub fn parse_net_dev(text: &str) -> Vec<InterfaceUsage> {
    text.lines()
        .skip(2)
        .filter_map(|line| {
            let (name, counters) = line.split_once(':')?;
            let name = name.trim();
            let fields: Vec<u64> = counters.split_whitespace().filter_map(|f| f.parse().ok()).collect();
            // Receive: bytes packets errs drop ...(8 fields); transmit: bytes packets errs drop ...
            (name != "lo" && fields.len() >= 12).then(|| InterfaceUsage {
                name: name.to_string(),
                rx_bytes: fields[0],
                rx_packets: fields[1],
                rx_errors: fields[2],
                rx_dropped: fields[3],
                tx_bytes: fields[8],
                tx_packets: fields[9],
                tx_errors: fields[10],
                tx_dropped: fields[11],
            })
        })
        .collect()
}

/// The interfaces of the network namespace process `pid` is in.
pub fn interfaces_of(pid: i32) -> Vec<InterfaceUsage> {
    std::fs::read_to_string(format!("/proc/{pid}/net/dev")).map(|text| parse_net_dev(&text)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_per_interface_without_loopback() {
        let text = "Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:     100       1    0    0    0     0          0         0      100       1    0    0    0     0       0          0
  eth0:    1296      16    2    4    0     0          0         0      656       8    1    5    0     0       0          0
";
        assert_eq!(
            parse_net_dev(text),
            vec![InterfaceUsage {
                name: "eth0".into(),
                rx_bytes: 1296,
                rx_packets: 16,
                rx_errors: 2,
                rx_dropped: 4,
                tx_bytes: 656,
                tx_packets: 8,
                tx_errors: 1,
                tx_dropped: 5,
            }]
        );
    }
}
