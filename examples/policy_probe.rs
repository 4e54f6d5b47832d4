// Scratch measurement tool (not committed): detection distribution, false DOWN, join modes.
const WIN: f64 = 1.0;
use meshd::sim::{NetConfig, Sim};
use meshd::swim::{Config, Event, MemberState};
use std::time::Duration;

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}
fn name(i: usize) -> String {
    format!("node-{i:05}")
}

fn all_alive(sim: &Sim, n: usize) -> bool {
    (0..sim.len())
        .filter(|&i| sim.is_running(i))
        .all(|i| sim.core(i).is_some_and(|c| c.count_in_state(MemberState::Alive) == n))
}

fn join(seed: u64, n: usize, spread: f64, config: &Config, loss: f64) -> (Sim, Option<f64>) {
    let mut sim = Sim::new(seed, config.clone(), NetConfig { loss, ..NetConfig::default() });
    sim.set_check_incarnations(false);
    sim.add_alone(&name(0));
    let stagger = secs(spread / n as f64);
    for i in 1..n {
        if spread > 0.0 {
            sim.run_for(stagger, |_| {});
        }
        sim.add_joining(&name(i), 0);
    }
    let start = sim.now();
    for _ in 0..12000 {
        if all_alive(&sim, n) {
            let t = (sim.now() - start).as_secs_f64();
            return (sim, Some(t));
        }
        sim.run_for(secs(0.02), |_| {});
    }
    (sim, None)
}

fn pct(v: &mut Vec<f64>, p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).map(String::as_str).unwrap_or("crash");
    let n: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(100);
    let loss: f64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(0.0);
    let count: usize = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(20);
    let mut config = Config::default();
    if let Ok(v) = std::env::var("CONF_MULT") {
        config.suspicion_confirmed_mult = v.parse().unwrap();
    }
    if let Ok(v) = std::env::var("FANOUT") {
        config.announce_fanout = v.parse().unwrap();
    }
    match mode {
        "join" => {
            let spread: f64 = std::env::var("SPREAD").ok().and_then(|v| v.parse().ok()).unwrap_or(0.0);
            let mut v = Vec::new();
            for seed in 0..count as u64 {
                let (_, t) = join(seed, n, spread, &config, loss);
                println!("seed {seed}: converged {t:?}");
                v.push(t.unwrap_or(999.0));
            }
            println!("join N={n} spread {spread}: p50 {:.2} max {:.2}", pct(&mut v, 0.5), pct(&mut v, 1.0));
        }
        "crash" => {
            let (mut sim, _) = join(42, n, 5.0, &config, 0.0);
            sim.run_for(secs(30.0), |_| {});
            sim.set_net(NetConfig { loss, ..NetConfig::default() });
            let (mut first, mut all, mut falsed) = (Vec::new(), Vec::new(), 0);
            for k in 0..count {
                let victim = 1 + (k * 7919) % (n - 1);
                let vname = name(victim);
                sim.crash(victim);
                let t0 = sim.now();
                let survivors = (0..sim.len()).filter(|&i| sim.is_running(i)).count();
                let (mut sus, mut downs) = (None, 0usize);
                for _ in 0..2000 {
                    sim.run_for(secs(0.02), |e| {
                        if let Event::Changed { member, .. } = &e.event {
                            if member.name == vname {
                                if member.state == MemberState::Suspected && sus.is_none() {
                                    sus = Some(e.at);
                                }
                                if member.state == MemberState::Down {
                                    downs += 1;
                                }
                            } else if member.state == MemberState::Down {
                                falsed += 1;
                            }
                        }
                    });
                    if downs >= survivors {
                        break;
                    }
                }
                if let Some(s) = sus {
                    first.push((s - t0).as_secs_f64());
                }
                if downs >= survivors {
                    all.push((sim.now() - t0).as_secs_f64());
                }
                // settle
                sim.run_for(secs(5.0), |e| {
                    if let Event::Changed { member, .. } = &e.event {
                        if member.state == MemberState::Down && member.name != vname {
                            falsed += 1;
                        }
                    }
                });
            }
            println!(
                "crash N={n} loss {loss}: first p50 {:.2} p90 {:.2} max {:.2} | all-DOWN p50 {:.2} p90 {:.2} max {:.2} ({} of {count}) | false DOWN {falsed}",
                pct(&mut first.clone(), 0.5), pct(&mut first.clone(), 0.9), pct(&mut first, 1.0),
                pct(&mut all.clone(), 0.5), pct(&mut all.clone(), 0.9), pct(&mut all.clone(), 1.0), all.len()
            );
        }
        "loss" => {
            let secs_run: f64 = std::env::var("RUN").ok().and_then(|v| v.parse().ok()).unwrap_or(600.0);
            let mut total = 0;
            for seed in 0..count as u64 {
                let (mut sim, _) = join(seed + 1000, n, 5.0, &config, 0.0);
                sim.set_net(NetConfig { loss, ..NetConfig::default() });
                let before = sim.stats().clone();
                let (mut downs, mut sus) = (0, 0);
                sim.run_for(secs(secs_run), |e| {
                    if let Event::Changed { member, .. } = &e.event {
                        if member.state == MemberState::Down { downs += 1; }
                        if member.state == MemberState::Suspected && !member.is_local { sus += 1; }
                    }
                });
                let after = sim.stats();
                let d = (after.datagrams_sent - before.datagrams_sent) as f64 / (secs_run * n as f64);
                let b = (after.bytes_sent - before.bytes_sent) as f64 / (secs_run * n as f64);
                let refs: u64 = (0..n).filter_map(|i| sim.core(i)).map(|c| c.stats().refutations).sum();
                let raised: u64 = (0..n).filter_map(|i| sim.core(i)).map(|c| c.stats().suspicions_raised).sum();
                println!("seed {seed}: false DOWN {downs}, suspicion events {sus}, raised {raised}, refutations {refs}, {d:.2} dgram/node/s {b:.0} B/node/s");
                total += downs;
            }
            println!("loss N={n} {loss}: total false DOWN {total} over {count} runs");
        }
        "quiet" => {
            let (mut sim, t) = join(7, n, std::env::var("SPREAD").ok().and_then(|v| v.parse().ok()).unwrap_or(0.0), &config, 0.0);
            println!("converged {t:?}");
            for w in 0..12 {
                let before = sim.stats().clone();
                sim.run_for(secs(WIN), |_| {});
                let after = sim.stats();
                let d = (after.datagrams_sent - before.datagrams_sent) as f64 / (WIN * n as f64);
                let b = (after.bytes_sent - before.bytes_sent) as f64 / (WIN * n as f64);
                println!("window {}-{} s: {d:.2} dgram/node/s {b:.0} B/node/s", w as f64 * WIN, (w + 1) as f64 * WIN);
            }
        }
        _ => {}
    }
}
