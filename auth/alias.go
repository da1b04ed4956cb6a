package auth

import (
	"context"
	"fmt"
	"slices"
	"strings"
)

// Alias is one alias and the AOR it stands for, both as ParseAOR returns
// them: "1001@a.example" and "alice@a.example".
type Alias struct{ Alias, AOR string }

// AliasResolver finds the user an alias stands for. FileStore and
// RedisStore implement it.
//
// An alias (an extension, "1001", or a number, "+81312345678") is another
// name of a user of the same domain: a call to 1001@a.example reaches
// alice@a.example's devices. An alias has no credentials (Lookup of it
// returns ErrUnknownUser), a name is never both a user and an alias, and
// an alias stands for a user, never for another alias. Deleting a user
// deletes its aliases.
type AliasResolver interface {
	// Alias returns the user part of the AOR that user@domain is an
	// alias of ("alice" for 1001@a.example), or ErrUnknownUser when it
	// is not an alias. Errors reaching the store wrap ErrUnavailable.
	Alias(ctx context.Context, user, domain string) (string, error)
}

var (
	_ AliasResolver = (*FileStore)(nil)
	_ AliasResolver = (*RedisStore)(nil)
)

// parseAlias parses alias and aor as AddAlias takes them, and returns the
// alias's user part, aor's user part and their domain, which must be the
// same.
func parseAlias(alias, aor string) (user, target, domain string, err error) {
	user, domain, err = ParseAOR(alias)
	if err != nil {
		return "", "", "", err
	}
	target, targetDomain, err := ParseAOR(aor)
	if err != nil {
		return "", "", "", err
	}
	if targetDomain != domain {
		return "", "", "", errCrossDomain(user, domain, target, targetDomain)
	}
	return user, target, domain, nil
}

func errCrossDomain(user, domain, target, targetDomain string) error {
	return fmt.Errorf("%w: %s@%s and %s@%s are in different domains (an alias is another name within its domain)",
		ErrAliasConflict, user, domain, target, targetDomain)
}

// errIsUser is AddAlias's error for an alias that is a user.
func errIsUser(user, domain string) error {
	return fmt.Errorf("%w: %s@%s is a user (delete the user first)", ErrAliasConflict, user, domain)
}

// errNotUser is AddAlias's error for a target that is no user.
func errNotUser(target, domain string) error {
	return fmt.Errorf("%w: %s@%s is not a user", ErrAliasConflict, target, domain)
}

// errIsAlias is Add's and Import's error for a user that is an alias.
func errIsAlias(user, domain, target string) error {
	return fmt.Errorf("%w: %s@%s is an alias of %s@%s (delete the alias first)", ErrAliasConflict, user, domain, target, domain)
}

// errNoAlias is DelAlias's error for a name that is no alias.
func errNoAlias(user, domain string) error {
	return fmt.Errorf("%s@%s is not an alias: %w", user, domain, ErrUnknownUser)
}

// sortAliases sorts aliases by alias, as List sorts AORs.
func sortAliases(aliases []Alias) {
	slices.SortFunc(aliases, func(a, b Alias) int { return strings.Compare(a.Alias, b.Alias) })
}
