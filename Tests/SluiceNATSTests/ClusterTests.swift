import Foundation
import SluiceNATS
import XCTest

/// A three-node JetStream cluster (each node its own store): a stream with three replicas keeps
/// taking writes after its leader is killed, once the other two elect a new one.
final class ClusterTests: NATSTestCase {
    func testPublishingResumesAfterTheStreamLeaderIsKilled() throws {
        let cluster = try startCluster()
        let connection = try connect([cluster.urls[0]])   // it learns the other two from the cluster
        try eventually("the client to know all three servers") { connection.knownServers.count == 3 }
        var jsOptions = JetStreamOptions()
        jsOptions.requestTimeoutMilliseconds = 2_000
        let js = try connection.jetStream(options: jsOptions)
        var config = StreamConfig(name: "APP", subjects: ["app.>"])
        config.replicas = 3
        // The cluster's meta leader is elected after the nodes start: until then, creating fails transiently.
        let created = try retrying(timeout: 60, "create a stream with 3 replicas") { () throws(NATSError) in try js.addStream(config) }
        XCTAssertEqual(created.config.replicas, 3)

        for number in 1...100 {
            try retrying("publish \(number)") { () throws(NATSError) in
                try js.publish("app.t", body(number), messageID: "m-\(number)")
            }
        }
        var info = try XCTUnwrap(try js.streamInfo("APP"))
        let leader = try XCTUnwrap(info.cluster?.leader, "a replicated stream has a leader")
        XCTAssertEqual(info.cluster?.name, "sluice-test")
        XCTAssertEqual(Set((info.cluster?.replicas ?? []).map(\.name) + [leader]), ["n1", "n2", "n3"])
        try eventually("both followers current") {
            try js.streamInfo("APP")?.cluster?.replicas.allSatisfy { $0.current && !$0.offline } == true
        }

        try XCTUnwrap(cluster.server(named: leader)).kill()
        let killed = Date()
        var firstWrite: TimeInterval?
        for number in 101...200 {
            let ack = try retrying(timeout: 60, "publish \(number) after the leader died") { () throws(NATSError) in
                try js.publish("app.t", body(number), messageID: "m-\(number)")
            }
            if firstWrite == nil { firstWrite = Date().timeIntervalSince(killed) }
            XCTAssertEqual(ack.sequence, UInt64(number), "nothing lost, nothing twice")
        }
        print("leader \(leader) killed: first write acknowledged \(String(format: "%.2f", firstWrite ?? -1)) s later")

        info = try XCTUnwrap(try retrying("stream info after the failover") { () throws(NATSError) in try js.streamInfo("APP") })
        let newLeader = try XCTUnwrap(info.cluster?.leader)
        XCTAssertNotEqual(newLeader, leader)
        XCTAssertEqual(info.state.messages, 200)
        XCTAssertEqual(info.state.lastSequence, 200)
        try eventually("the dead leader reported offline or behind") {
            let replicas = try js.streamInfo("APP")?.cluster?.replicas ?? []
            return replicas.contains { $0.name == leader && ($0.offline || !$0.current) }
        }
        // Reads are served by the new leader too.
        XCTAssertEqual(try js.message("APP", sequence: 150)?.data, body(150))
        XCTAssertEqual(connection.state, .connected)
    }
}
