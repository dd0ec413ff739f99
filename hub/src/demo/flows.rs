//! The demo's stories, each through the nodes' public services.

use serde_json::{Value, json};

use yimen_proto::pb;

use super::{
    COUNTY, County, HEQUAN, HUANGSHI, REVIEWERS, STATION_CLERK, STATION_DEPT, XIDU, XIDU_VILLAGE,
    YANPI, clerk, links_of, name_of, until,
};

const CLERK: &str = "李娟";

fn senior(household: &str) -> pb::ApplyRequest {
    pb::ApplyRequest {
        operator: CLERK.to_owned(),
        item_code: "430421-MZ-0001".to_owned(),
        applicant: Some(pb::ApplicantInput {
            id_number: "430421194901010022".to_owned(),
            name: "王秀兰".to_owned(),
            household: household.to_owned(),
            statuses: Vec::new(),
        }),
        materials: vec!["sfzfyj".to_owned(), "zp".to_owned()],
        helper: Some(pb::HelperInput {
            name: "王建国".to_owned(),
            relation: "子女".to_owned(),
        }),
    }
}

fn medical_aid(household: &str, materials: &[&str]) -> pb::ApplyRequest {
    pb::ApplyRequest {
        operator: CLERK.to_owned(),
        item_code: "430421-YB-0001".to_owned(),
        applicant: Some(pb::ApplicantInput {
            id_number: "430421195503150016".to_owned(),
            name: "刘德福".to_owned(),
            household: household.to_owned(),
            statuses: vec!["dibao".to_owned()],
        }),
        materials: materials.iter().map(|m| (*m).to_owned()).collect(),
        helper: None,
    }
}

async fn accept(
    county: &County,
    at: &'static str,
    request: pb::ApplyRequest,
) -> anyhow::Result<pb::CaseView> {
    let mut c = clerk(county.clerk_of(at)).await?;
    let reply = c
        .apply(request)
        .await
        .map_err(|s| anyhow::anyhow!("apply at {at}: {}", s.message()))?;
    match reply.into_inner().outcome {
        Some(pb::apply_reply::Outcome::Accepted(slip)) => slip
            .case
            .ok_or_else(|| anyhow::anyhow!("a slip without its case")),
        other => anyhow::bail!("not accepted at {at}: {other:?}"),
    }
}

/// Runs every story; returns what the JSON document reports of them.
pub(super) async fn run_all(county: &County) -> anyhow::Result<Value> {
    let senior = senior_card(county).await?;
    let aid = medical_aid_with_a_cut_link(county).await?;
    let anywhere = handle_anywhere(county).await?;
    settle(county).await?;
    let mut links = serde_json::Map::new();
    for id in county.nodes.keys() {
        let views = links_of(county.clerk_of(id)).await.unwrap_or_default();
        links.insert(
            (*id).to_owned(),
            views
                .iter()
                .map(|l| json!({"peer": l.peer, "direction": l.direction, "state": l.state, "lag_events": l.lag_events}))
                .collect(),
        );
    }
    Ok(json!({
        "senior_card": senior,
        "medical_aid": aid,
        "handle_anywhere": anywhere,
        "links": links,
    }))
}

/// Waits until every link of every node has nothing left to send, twice in a row (link
/// status refreshes every half second): every store then holds what its audience should.
async fn settle(county: &County) -> anyhow::Result<()> {
    let addrs: Vec<_> = county.nodes.keys().map(|id| county.clerk_of(id)).collect();
    let quiet_rounds = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    until("every link to drain", || {
        let addrs = addrs.clone();
        let quiet = quiet_rounds.clone();
        async move {
            let mut all_quiet = true;
            for a in &addrs {
                let links = links_of(*a).await?;
                all_quiet &= links
                    .iter()
                    .all(|l| l.state == "connected" && l.lag_events == 0);
            }
            let rounds = if all_quiet {
                quiet.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1
            } else {
                quiet.store(0, std::sync::atomic::Ordering::SeqCst);
                0
            };
            // Three quiet looks, 50 ms apart, past a status refresh.
            (rounds >= 12).then_some(())
        }
    })
    .await?;
    county.story.say("所有链路已送达完毕");
    Ok(())
}

/// 老年优待证 (即办): accepted and completed at the counter of 河泉村.
async fn senior_card(county: &County) -> anyhow::Result<Value> {
    let s = &county.story;
    let case = accept(county, HEQUAN, senior(HEQUAN)).await?;
    s.say(format!(
        "河泉村受理 老年优待证（即办），办件编号 {}",
        case.number
    ));
    let mut c = clerk(county.clerk_of(HEQUAN)).await?;
    c.complete(pb::CompleteRequest {
        operator: CLERK.to_owned(),
        case_number: case.number.clone(),
        result: "当场制发老年人优待证".to_owned(),
    })
    .await
    .map_err(|e| anyhow::anyhow!("complete: {}", e.message()))?;
    s.say("河泉村当场办结，优待证已发放");
    county
        .wait_case(YANPI, &case.number, "the senior card", |v| {
            v.status == "completed"
        })
        .await?;
    s.say("演陂镇已同步该办件（办结），供监督");
    Ok(json!({"number": case.number, "accepted_at": HEQUAN}))
}

/// 医疗救助 at 河泉村: pre-check, forwarded to 演陂镇 while the village's link is cut (durable at
/// the village, not acknowledged), then the link comes back and 演陂镇 signs for it.
async fn medical_aid_with_a_cut_link(county: &County) -> anyhow::Result<Value> {
    let s = &county.story;
    let case = accept(
        county,
        HEQUAN,
        medical_aid(HEQUAN, &["zyfp", "xnhpj", "dbz"]),
    )
    .await?;
    s.say(format!(
        "河泉村受理 医疗救助，办件编号 {}，承诺时限至 {}",
        case.number,
        case.deadline.as_ref().map_or_else(String::new, |d| format!(
            "{}-{:02}-{:02}",
            d.year, d.month, d.day
        ))
    ));
    let mut c = clerk(county.clerk_of(HEQUAN)).await?;
    c.precheck(pb::StepRequest {
        operator: CLERK.to_owned(),
        case_number: case.number.clone(),
        opinion: "材料齐全，符合低保对象条件".to_owned(),
    })
    .await
    .map_err(|e| anyhow::anyhow!("precheck: {}", e.message()))?;
    s.say("河泉村初审通过");
    county.relay.cut();
    s.say("（模拟断网：河泉村与演陂镇之间的链路中断）");
    c.forward(pb::ForwardRequest {
        operator: CLERK.to_owned(),
        case_number: case.number.clone(),
        to_node: String::new(),
        to_department: String::new(),
        reason: "初审通过，转报乡镇审核".to_owned(),
    })
    .await
    .map_err(|e| anyhow::anyhow!("forward: {}", e.message()))?;
    s.say("河泉村转报演陂镇：转报已在村节点落盘，但尚未送达");
    let addr = county.clerk_of(HEQUAN);
    let lag = until(
        "the village's link to show the waiting handoff",
        || async move {
            let links = links_of(addr).await?;
            let up = links.into_iter().find(|l| l.direction == "parent")?;
            (up.lag_events > 0).then_some(up)
        },
    )
    .await?;
    let state = yimen_node::cli::link_state_zh(&lag.state);
    s.say(format!(
        "河泉村链路状态：{state}，待送 {} 件",
        lag.lag_events
    ));
    county.relay.restore();
    s.say("（链路恢复）");
    let signed = county
        .wait_case(YANPI, &case.number, "the handoff", |v| {
            v.custodian.starts_with(YANPI) && v.received
        })
        .await?;
    s.say(format!(
        "演陂镇收到转报并自动签收（承办：{}）",
        signed.custodian
    ));
    county
        .wait_case(HEQUAN, &case.number, "the receipt", |v| v.received)
        .await?;
    s.say("签收回执已回到河泉村");

    // 演陂镇's reviewer finds the invoice unreadable: 退回补正, once, naming everything.
    let reviewer = reviewer_of(YANPI);
    let mut desk = county.desk(YANPI, &format!("reviewer-{YANPI}")).await?;
    desk.return_for_supplement(pb::ReturnRequest {
        operator: reviewer.to_owned(),
        case_number: case.number.clone(),
        missing: vec!["zyfp".to_owned()],
        reason: "住院发票复印件不清晰，请补交原件".to_owned(),
    })
    .await
    .map_err(|e| anyhow::anyhow!("return: {}", e.message()))?;
    s.say(format!(
        "演陂镇审核员 {reviewer}：住院发票不清晰，一次性告知后退回河泉村补正"
    ));
    county
        .wait_case(HEQUAN, &case.number, "the return", |v| {
            v.custodian == HEQUAN && v.received
        })
        .await?;
    c.supplement(pb::SupplementRequest {
        operator: CLERK.to_owned(),
        case_number: case.number.clone(),
        materials: vec!["zyfp".to_owned()],
    })
    .await
    .map_err(|e| anyhow::anyhow!("supplement: {}", e.message()))?;
    c.forward(pb::ForwardRequest {
        operator: CLERK.to_owned(),
        case_number: case.number.clone(),
        to_node: String::new(),
        to_department: String::new(),
        reason: "已补正，再次转报".to_owned(),
    })
    .await
    .map_err(|e| anyhow::anyhow!("forward: {}", e.message()))?;
    s.say("河泉村收到退件，申请人补交住院发票原件，再次转报演陂镇（办理时限重新计算）");
    let done = through_the_county(county, &case.number, YANPI, HEQUAN).await?;
    Ok(
        json!({"number": case.number, "accepted_at": HEQUAN, "custodian": done.custodian, "status": done.status}),
    )
}

fn reviewer_of(hub: &str) -> &'static str {
    REVIEWERS
        .iter()
        .find(|(h, _)| *h == hub)
        .map_or("审核员", |(_, r)| r)
}

/// The rest of a 医疗救助 case once it is at `township`: review and 公示 at the township's
/// desk, the timer ends 公示 and hands it to the county's 医保局, which approves and
/// disburses; the result goes back to `village`, which completes it.
async fn through_the_county(
    county: &County,
    number: &str,
    township: &'static str,
    village: &'static str,
) -> anyhow::Result<pb::CaseView> {
    let s = &county.story;
    let (t, v) = (name_of(township), name_of(village));
    county
        .wait_case(township, number, "the handoff", |c| {
            c.custodian == township && c.received
        })
        .await?;
    let reviewer = reviewer_of(township);
    let mut desk = county
        .desk(township, &format!("reviewer-{township}"))
        .await?;
    desk.review(pb::DeskStepRequest {
        operator: reviewer.to_owned(),
        case_number: number.to_owned(),
        opinion: "经入户核查，情况属实，同意救助".to_owned(),
    })
    .await
    .map_err(|e| anyhow::anyhow!("review: {}", e.message()))?;
    s.say(format!("{t}审核员 {reviewer} 审核通过"));
    desk.notice(pb::NoticeRequest {
        operator: reviewer.to_owned(),
        case_number: number.to_owned(),
    })
    .await
    .map_err(|e| anyhow::anyhow!("notice: {}", e.message()))?;
    let pending = desk
        .pending(pb::PendingRequest { limit: 0 })
        .await
        .map_err(|e| anyhow::anyhow!("pending: {}", e.message()))?
        .into_inner();
    let ends = pending
        .cases
        .iter()
        .find(|p| p.case.as_ref().is_some_and(|c| c.number == number))
        .map(|p| p.notice_ends.clone())
        .unwrap_or_default();
    s.say(format!(
        "{t}发布公示（送达申请人户籍所在村），公示期至 {ends}"
    ));
    let ends = chrono::NaiveDate::parse_from_str(&ends, "%Y-%m-%d")
        .map_err(|e| anyhow::anyhow!("the notice's end {ends:?}: {e}"))?;
    let next_morning = ends
        .succ_opt()
        .and_then(|d| d.and_hms_opt(9, 0, 0))
        .ok_or_else(|| anyhow::anyhow!("no day after {ends}"))?;
    // The demo clock jumps to the morning after: the township's timer ends 公示 and hands
    // the case on to the county's 医保局.
    county.set_beijing(next_morning);
    s.say(format!("（演示时钟拨至 {next_morning}）"));
    let station = format!("{COUNTY}/{STATION_DEPT}");
    county
        .wait_case(COUNTY, number, "the handoff to the 医保局", |c| {
            c.custodian == station && c.received
        })
        .await?;
    s.say(format!(
        "公示期满无异议，{t}的定时任务结束公示并转报县医保局，县医保局签收"
    ));
    let mut desk = county.desk(COUNTY, "station").await?;
    desk.approve(pb::DeskStepRequest {
        operator: STATION_CLERK.to_owned(),
        case_number: number.to_owned(),
        opinion: "符合医疗救助条件，批准救助".to_owned(),
    })
    .await
    .map_err(|e| anyhow::anyhow!("approve: {}", e.message()))?;
    s.say("县医保局审批通过");
    let disbursed = desk
        .disburse(pb::DeskStepRequest {
            operator: STATION_CLERK.to_owned(),
            case_number: number.to_owned(),
            opinion: "救助资金已发放至申请人账户".to_owned(),
        })
        .await
        .map_err(|e| anyhow::anyhow!("disburse: {}", e.message()))?
        .into_inner();
    s.say(format!(
        "县医保局发放救助资金，结果转回{}",
        name_of(disbursed.forwarded_to.split('/').next().unwrap_or(village))
    ));
    county
        .wait_case(village, number, "the result", |c| {
            c.custodian == village && c.received
        })
        .await?;
    let mut c = clerk(county.clerk_of(village)).await?;
    c.complete(pb::CompleteRequest {
        operator: CLERK.to_owned(),
        case_number: number.to_owned(),
        result: "已告知申请人救助结果".to_owned(),
    })
    .await
    .map_err(|e| anyhow::anyhow!("complete: {}", e.message()))?;
    let done = county
        .wait_case(village, number, "completion", |c| c.status == "completed")
        .await?;
    s.say(format!("{v}告知申请人结果并办结"));
    Ok(done)
}

/// 同城通办: 黄石村 (演陂镇) accepts 医疗救助 for a resident of 西渡镇; the case goes up to the
/// county and down to 西渡镇, which gets its whole history and signs for it.
async fn handle_anywhere(county: &County) -> anyhow::Result<Value> {
    let s = &county.story;
    let case = accept(
        county,
        HUANGSHI,
        medical_aid(XIDU_VILLAGE, &["zyfp", "czybpj", "wbz"]),
    )
    .await?;
    s.say(format!(
        "同城通办：黄石村为户籍在{}的居民受理 医疗救助，办件编号 {}",
        name_of(XIDU_VILLAGE),
        case.number
    ));
    let mut c = clerk(county.clerk_of(HUANGSHI)).await?;
    c.precheck(pb::StepRequest {
        operator: CLERK.to_owned(),
        case_number: case.number.clone(),
        opinion: "材料齐全".to_owned(),
    })
    .await
    .map_err(|e| anyhow::anyhow!("precheck: {}", e.message()))?;
    c.forward(pb::ForwardRequest {
        operator: CLERK.to_owned(),
        case_number: case.number.clone(),
        to_node: String::new(),
        to_department: String::new(),
        reason: "同城通办，转申请人户籍地乡镇审核".to_owned(),
    })
    .await
    .map_err(|e| anyhow::anyhow!("forward: {}", e.message()))?;
    s.say("黄石村初审后转报：经县级节点（共同上级）转至西渡镇");
    let signed = county
        .wait_case(XIDU, &case.number, "the handle-anywhere handoff", |v| {
            v.custodian.starts_with(XIDU) && v.received
        })
        .await?;
    s.say(format!(
        "西渡镇收到办件及其全部历史（共 {} 条事件）并签收",
        signed.events.len()
    ));
    county
        .wait_case(HUANGSHI, &case.number, "the receipt", |v| v.received)
        .await?;
    s.say("签收回执已回到黄石村");
    let done = through_the_county(county, &case.number, XIDU, HUANGSHI).await?;
    Ok(
        json!({"number": case.number, "accepted_at": HUANGSHI, "custodian": done.custodian, "status": done.status}),
    )
}
