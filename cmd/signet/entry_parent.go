package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/signet-id/signet/proto/adminv1"
	"github.com/signet-id/signet/server/issuer"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// parentKnown reports whether some agent can issue entries parented to parent: it is the server's ID
// (the parent of node aliases), an agent that attested under it, a node alias (an entry with that
// SPIFFE ID parented to the server's ID), the parent of entries already (as dev mode's agent is), or the
// ID an unused, unexpired join token will give an agent. It asks the admin API with existing list calls.
func parentKnown(ctx context.Context, c adminv1.AdminClient, parent string, now time.Time) (bool, error) {
	id, err := spiffeid.FromString(parent)
	if err != nil {
		return false, err
	}
	serverID := issuer.ServerID(id.TrustDomain()).String()
	if parent == serverID {
		return true, nil
	}
	agents, err := c.ListAgents(ctx, &adminv1.ListAgentsRequest{})
	if err != nil {
		return false, err
	}
	for _, a := range agents.Agents {
		if a.Id == parent {
			return true, nil
		}
	}
	aliases, err := listEntries(ctx, c, &adminv1.ListEntriesRequest{SpiffeId: parent})
	if err != nil {
		return false, err
	}
	for _, e := range aliases {
		if e.ParentId == serverID {
			return true, nil
		}
	}
	siblings, err := listEntries(ctx, c, &adminv1.ListEntriesRequest{ParentId: parent})
	if err != nil || len(siblings) > 0 {
		return len(siblings) > 0, err
	}
	tokens, err := c.ListJoinTokens(ctx, &adminv1.ListJoinTokensRequest{})
	if err != nil {
		return false, err
	}
	for _, t := range tokens.Tokens {
		if t.UsedAt != 0 || t.ExpiresAt <= now.Unix() {
			continue
		}
		if t.SpiffeId == parent || (t.SpiffeId == "" && issuer.AgentIDForToken(id.TrustDomain(), t.Id).String() == parent) {
			return true, nil
		}
	}
	return false, nil
}

// listEntries reads every page of a ListEntries stream.
func listEntries(ctx context.Context, c adminv1.AdminClient, req *adminv1.ListEntriesRequest) ([]*adminv1.Entry, error) {
	stream, err := c.ListEntries(ctx, req)
	if err != nil {
		return nil, err
	}
	var entries []*adminv1.Entry
	for {
		page, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return entries, nil
		}
		if err != nil {
			return nil, err
		}
		entries = append(entries, page.Entries...)
	}
}

// unknownParentMessage says what an entry with an unknown parent means and what to check.
func unknownParentMessage(parent string) string {
	return fmt.Sprintf("--parent-id %s: no agent has attested with this ID, no node alias has it, no entry has it as parent and no unused join token will give it: no agent issues this entry until one does (check the ID against 'signet agent list')", parent)
}
