//! `/proc/<pid>/stat`, read in one place. The command name (field 2) may hold
//! spaces and parentheses, so the later fields are counted from its last `)`.

/// The fields of `/proc/<pid>/stat` berth uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcStat {
    /// Field 2, without its parentheses.
    pub name: String,
    /// Field 3: `R`, `S`, `D`, `Z`, ...
    pub state: char,
    /// Field 4.
    pub ppid: i32,
    /// Fields 14 and 15 added: user and system CPU time, in clock ticks.
    pub cpu_ticks: u64,
    /// Field 22, in clock ticks since boot: with the PID, it names one process
    /// for good (a PID is reused, the pair is not).
    pub start_time: u64,
}

impl ProcStat {
    pub fn is_zombie(&self) -> bool {
        self.state == 'Z'
    }
}

/// The stat of process `pid`, if it exists.
pub fn stat(pid: i32) -> Option<ProcStat> {
    parse(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Exists and is not a zombie (killed, waiting for its reaper).
pub fn is_alive(pid: i32) -> bool {
    stat(pid).is_some_and(|stat| !stat.is_zombie())
}

fn parse(text: &str) -> Option<ProcStat> {
    let (head, rest) = text.rsplit_once(')')?;
    let name = head.split_once('(')?.1.to_string();
    // `rest` starts at field 3.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(ProcStat {
        name,
        state: fields.first()?.chars().next()?,
        ppid: fields.get(1)?.parse().ok()?,
        cpu_ticks: fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?,
        start_time: fields.get(19)?.parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_with_spaces_and_parentheses_does_not_shift_the_fields() {
        let text = "42 (a (weird) name) S 1 42 42 0 -1 4194560 1 0 0 0 7 5 0 0 20 0 1 0 12345 0 0";
        let stat = parse(text).expect("parses");
        let expected = ProcStat { name: "a (weird) name".into(), state: 'S', ppid: 1, cpu_ticks: 12, start_time: 12345 };
        assert_eq!(stat, expected);
        assert!(parse("42 (cut").is_none());
        assert!(parse("42 (short) S 1").is_none());
    }

    #[test]
    fn this_process_is_alive_and_its_parent_known() {
        let me = stat(std::process::id() as i32).expect("our own stat");
        assert!(!me.is_zombie() && me.ppid > 0 && me.start_time > 0);
        assert!(is_alive(std::process::id() as i32));
    }
}
