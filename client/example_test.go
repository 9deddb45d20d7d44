package client_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/clearance-dev/clearance"
	"github.com/clearance-dev/clearance/client"
)

// The README's example (compiled, not run: it needs a server).
func Example() {
	ctx, token := context.Background(), "<access token or clr_ key>"
	c, err := client.New(client.Config{Server: "http://127.0.0.1:8080", Credential: token})
	if err != nil {
		return
	}
	res, err := c.Search(ctx, client.SearchRequest{Query: "login timeout", TopK: 5})
	if err != nil {
		return
	}
	for _, r := range res.Results {
		fmt.Println(r.TicketID, r.Title)
	}
	if _, err = c.Ticket(ctx, "SEC-1"); errors.Is(err, clearance.ErrNotFound) {
		fmt.Println("not visible (or missing: the same answer)")
	}
}
