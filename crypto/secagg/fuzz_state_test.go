package secagg_test

import (
	"testing"

	"github.com/fedtune/fedtune/crypto/secagg"
	"github.com/fedtune/fedtune/crypto/secagg/sim"
)

// FuzzStateMachines feeds arbitrary bytes, decoded as every message type, to
// a server and a client that are in the matching stage. Whatever decodes
// must be handled with an error or accepted, never a panic.
func FuzzStateMachines(f *testing.F) {
	for _, list := range sampleMessages(f) {
		for _, b := range list {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fed, err := sim.New(sim.Config{Params: params(4, 3, 9, false), Seed: [32]byte{77}})
		if err != nil {
			t.Fatal(err)
		}
		for st := secagg.StageAdvertiseKeys; st <= secagg.StageUnmask; st++ {
			c := fed.Clients[0]
			switch st {
			case secagg.StageAdvertiseKeys:
				if m, err := secagg.UnmarshalAdvertiseKeys(b); err == nil {
					fed.Server.ReceiveAdvertiseKeys(m)
				}
			case secagg.StageShareKeys:
				if m, err := secagg.UnmarshalShareKeys(b); err == nil {
					fed.Server.ReceiveShareKeys(m)
				}
				if m, err := secagg.UnmarshalKeyList(b); err == nil {
					cc := *c
					cc.ShareKeys(m)
				}
			case secagg.StageMaskedInput:
				if m, err := secagg.UnmarshalMaskedInput(b); err == nil {
					fed.Server.ReceiveMaskedInput(m)
				}
				if m, err := secagg.UnmarshalShareKeysRelay(b); err == nil {
					cc := *c
					cc.MaskedInput(m, make([]uint32, 9))
				}
			case secagg.StageConsistencyCheck:
				if m, err := secagg.UnmarshalConsistencySig(b); err == nil {
					fed.Server.ReceiveConsistency(m)
				}
				if m, err := secagg.UnmarshalSurvivorList(b); err == nil {
					cc := *c
					cc.ConsistencyCheck(m)
				}
			case secagg.StageUnmask:
				if m, err := secagg.UnmarshalUnmaskShares(b); err == nil {
					fed.Server.ReceiveUnmask(m)
				}
				if m, err := secagg.UnmarshalConsistencyCertificate(b); err == nil {
					cc := *c
					cc.Unmask(m)
				}
			}
			if fed.Server.Stage() != st {
				return // the fuzzed message was accepted and changed the course
			}
			if err := fed.Step(); err != nil {
				return
			}
		}
	})
}
