//! Reading the pod's addresses out of a CNI result (CNI spec, "Success" section).

use std::net::IpAddr;

use serde_json::Value;

use super::PodNetwork;

/// The pod's view of a result. `ips[].interface` indexes `interfaces`; an address on an
/// interface outside the sandbox (a bridge's gateway some plugins report) is not the pod's.
/// Results of spec 0.2.0 carry `ip4` / `ip6` instead of `ips`.
pub(super) fn pod_network(result: &Value, ifname: &str) -> Result<PodNetwork, String> {
    if !result.is_object() {
        return Err("the result is not a JSON object".into());
    }
    let interfaces = result.get("interfaces").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    let mut ips = Vec::new();
    let mut interface = None;
    for entry in result.get("ips").and_then(Value::as_array).into_iter().flatten() {
        let index = entry.get("interface").and_then(Value::as_u64);
        let iface = index.and_then(|i| usize::try_from(i).ok()).and_then(|i| interfaces.get(i));
        if iface.is_some_and(|iface| !in_sandbox(iface, ifname)) {
            continue;
        }
        let address = entry.get("address").and_then(Value::as_str).ok_or("an `ips` entry has no address")?;
        let ip = parse_cidr_address(address)?;
        if ips.is_empty() {
            interface = iface.and_then(|iface| iface.get("name")).and_then(Value::as_str).map(str::to_string);
        }
        if !ips.contains(&ip) {
            ips.push(ip);
        }
    }
    for legacy in ["ip4", "ip6"] {
        if let Some(address) = result.get(legacy).and_then(|ip| ip.get("ip")).and_then(Value::as_str) {
            let ip = parse_cidr_address(address)?;
            if !ips.contains(&ip) {
                ips.push(ip);
            }
        }
    }
    if ips.is_empty() {
        return Err("it gives the pod no IP address".into());
    }
    Ok(PodNetwork { ips, interface, raw_result: result.clone() })
}

fn in_sandbox(interface: &Value, ifname: &str) -> bool {
    let sandbox = interface.get("sandbox").and_then(Value::as_str).unwrap_or_default();
    !sandbox.is_empty() || interface.get("name").and_then(Value::as_str) == Some(ifname)
}

/// `10.88.0.5/16` → `10.88.0.5`.
fn parse_cidr_address(cidr: &str) -> Result<IpAddr, String> {
    let address = cidr.split_once('/').map_or(cidr, |(address, _prefix)| address);
    address.parse().map_err(|_| format!("{cidr:?} is not an address in CIDR form"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn dual_stack_addresses_in_order_without_host_side_ones() {
        let result = json!({
            "cniVersion": "1.0.0",
            "interfaces": [
                {"name": "cni0", "mac": "aa:bb:cc:dd:ee:00"},
                {"name": "veth1234", "mac": "aa:bb:cc:dd:ee:01"},
                {"name": "eth0", "mac": "aa:bb:cc:dd:ee:02", "sandbox": "/run/netns/x"}
            ],
            "ips": [
                {"address": "10.88.0.1/16", "interface": 0},
                {"address": "10.88.0.5/16", "gateway": "10.88.0.1", "interface": 2},
                {"address": "fd00::5/64", "interface": 2}
            ]
        });
        let network = pod_network(&result, "eth0").unwrap();
        assert_eq!(network.ips, ["10.88.0.5".parse::<IpAddr>().unwrap(), "fd00::5".parse().unwrap()]);
        assert_eq!(network.interface.as_deref(), Some("eth0"));
        assert_eq!(network.raw_result, result);
    }

    #[test]
    fn addresses_without_interface_and_legacy_results_count() {
        let network = pod_network(&json!({"ips": [{"address": "10.1.0.2/24"}]}), "eth0").unwrap();
        assert_eq!(network.ips, ["10.1.0.2".parse::<IpAddr>().unwrap()]);
        assert_eq!(network.interface, None);
        let legacy = pod_network(&json!({"cniVersion": "0.2.0", "ip4": {"ip": "10.2.0.3/24"}}), "eth0").unwrap();
        assert_eq!(legacy.ips, ["10.2.0.3".parse::<IpAddr>().unwrap()]);
    }

    #[test]
    fn a_result_without_address_or_with_garbage_is_refused() {
        assert!(pod_network(&json!({"cniVersion": "1.0.0"}), "eth0").is_err());
        assert!(pod_network(&json!({"ips": [{"address": "ten/8"}]}), "eth0").is_err());
        assert!(pod_network(&json!([1]), "eth0").is_err());
    }
}
