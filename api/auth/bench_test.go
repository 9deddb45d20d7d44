package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
	"github.com/lestrrat-go/jwx/v3/jwt"
)

// BenchmarkVerify: one access-token verification with a warm JWKS cache, per
// algorithm (the cost every request pays).
func BenchmarkVerify(b *testing.B) {
	rsaRaw, _ := rsa.GenerateKey(rand.Reader, 2048)
	ecRaw, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	dev, err := LoadOrCreateDevKey(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		raw  any
		alg  jwa.SignatureAlgorithm
	}{{"RS256", rsaRaw, jwa.RS256()}, {"ES256", ecRaw, jwa.ES256()}, {"EdDSA", dev.private, jwa.EdDSA()}} {
		b.Run(tc.name, func(b *testing.B) {
			k, ok := tc.raw.(jwk.Key)
			if !ok {
				k, _ = jwk.Import(tc.raw)
			}
			_ = k.Set(jwk.KeyIDKey, "k")
			pub, _ := k.PublicKey()
			set := jwk.NewSet()
			_ = set.AddKey(pub)
			js, _ := jwk.PublicSetOf(set)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				b, _ := jsonOf(js)
				_, _ = w.Write(b)
			}))
			defer srv.Close()
			v, err := NewJWTVerifier(context.Background(), JWTConfig{Issuer: "https://idp", Audiences: []string{"https://api"}, JWKSURL: srv.URL})
			if err != nil {
				b.Fatal(err)
			}
			defer v.Close()
			tok, _ := jwt.NewBuilder().Issuer("https://idp").Audience([]string{"https://api"}).Subject("anne").
				Expiration(time.Now().Add(time.Hour)).Claim("tenant", "acme").Claim("scope", "tickets:read").Build()
			hdr := jws.NewHeaders()
			_ = hdr.Set(jws.TypeKey, "at+jwt")
			signed, err := jwt.Sign(tok, jwt.WithKey(tc.alg, k, jws.WithProtectedHeaders(hdr)))
			if err != nil {
				b.Fatal(err)
			}
			if _, _, err := v.Verify(context.Background(), string(signed)); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for b.Loop() {
				if _, _, err := v.Verify(context.Background(), string(signed)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkAPIKey: one API-key authentication against the data-dir store with
// 100 keys (the file is read on every lookup so revocations apply at once).
func BenchmarkAPIKey(b *testing.B) {
	fk, err := OpenFileKeys(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	k := NewKeys(fk, nil)
	var key string
	for range 100 {
		if _, key, err = k.Create(context.Background(), "acme", "sa", "", nil, Creator{Kind: CreatorOperator}); err != nil {
			b.Fatal(err)
		}
	}
	for b.Loop() {
		if _, err := k.Authenticate(context.Background(), key); err != nil {
			b.Fatal(err)
		}
	}
}

func jsonOf(s jwk.Set) ([]byte, error) { return json.Marshal(s) }
