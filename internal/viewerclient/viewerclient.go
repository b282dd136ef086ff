// Package viewerclient drives the head-end's web pages as a viewer's
// browser does without JavaScript: it fills in the forms, keeps the
// session cookie and echoes the CSRF token. The demo signs its viewer up
// with it, and end-to-end tests check what the pages say. The browser
// tests of package web cover the pages themselves, in Chromium.
package viewerclient

import (
	"context"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"

	"github.com/boxswarm/boxswarm/media"
)

// Client is one viewer's browser.
type Client struct {
	base string
	hc   *http.Client
}

// New returns a browser for the pages at base ("http://host:port").
func New(base string) *Client {
	jar, _ := cookiejar.New(nil)
	return &Client{base: strings.TrimRight(base, "/"), hc: &http.Client{Jar: jar}}
}

// SignUp is the sign-up form.
type SignUp struct {
	Name, Email, Password          string
	Street, City, Postcode, Region string
	PaymentToken                   string
}

var (
	csrfRe = regexp.MustCompile(`name="csrf" value="([^"]+)"`)
	codeRe = regexp.MustCompile(`id="activation-code">([^<]+)<`)
	listRe = regexp.MustCompile(`(?s)<li id="t-([0-9a-f]{32})">.*?<span class="state">([^<,]+)(?:, (\d+)%)?`)
	boxRe  = regexp.MustCompile(`action="/boxes/([^/"]+)/list/add"`)
	errRe  = regexp.MustCompile(`(?s)<p class="error"[^>]*>(.*?)</p>`)
	tagRe  = regexp.MustCompile(`<[^>]+>`)
)

// SignUp signs the viewer up and returns the box's activation code, as
// the welcome page shows it.
func (c *Client) SignUp(ctx context.Context, s SignUp) (code string, err error) {
	page, err := c.submit(ctx, "/signup", "/signup", url.Values{
		"name": {s.Name}, "email": {s.Email}, "password": {s.Password}, "street": {s.Street}, "city": {s.City},
		"postcode": {s.Postcode}, "region": {s.Region}, "payment_token": {s.PaymentToken},
	})
	if err != nil {
		return "", fmt.Errorf("sign up %s: %w", s.Email, err)
	}
	m := codeRe.FindStringSubmatch(page)
	if m == nil {
		return "", fmt.Errorf("sign up %s: no activation code on the page: %s", s.Email, pageError(page))
	}
	return strings.TrimSpace(html.UnescapeString(m[1])), nil
}

// Login logs the viewer in.
func (c *Client) Login(ctx context.Context, email, password string) error {
	page, err := c.submit(ctx, "/login", "/login", url.Values{"email": {email}, "password": {password}})
	if err != nil {
		return fmt.Errorf("log in %s: %w", email, err)
	}
	if strings.Contains(page, `action="/login"`) {
		return fmt.Errorf("log in %s: refused: %s", email, pageError(page))
	}
	return nil
}

// Add puts a title at the end of My List on the viewer's (first) box,
// from the title's page.
func (c *Client) Add(ctx context.Context, title media.ID) error {
	page, err := c.get(ctx, "/titles/"+title.String())
	if err != nil {
		return fmt.Errorf("add %s: %w", title, err)
	}
	m := boxRe.FindStringSubmatch(page)
	if m == nil {
		return fmt.Errorf("add %s: the title's page offers no box to add it to: %s", title, pageError(page))
	}
	if _, err := c.submit(ctx, "/titles/"+title.String(), "/boxes/"+m[1]+"/list/add",
		url.Values{"title": {title.String()}, "from": {"title"}}); err != nil {
		return fmt.Errorf("add %s: %w", title, err)
	}
	return nil
}

// Entry is a line of My List.
type Entry struct {
	Title   media.ID
	State   string // "Downloaded", "Downloading", "Not started", ...
	Percent int
}

// List reads My List of the viewer's first box.
func (c *Client) List(ctx context.Context) ([]Entry, error) {
	page, err := c.get(ctx, "/list")
	if err != nil {
		return nil, fmt.Errorf("my list: %w", err)
	}
	var out []Entry
	for _, m := range listRe.FindAllStringSubmatch(page, -1) {
		id, err := media.ParseID(m[1])
		if err != nil {
			return nil, fmt.Errorf("my list: %w", err)
		}
		e := Entry{Title: id, State: strings.TrimSpace(m[2])}
		fmt.Sscan(m[3], &e.Percent)
		out = append(out, e)
	}
	return out, nil
}

// submit loads the form page (for its CSRF token) and posts the form.
func (c *Client) submit(ctx context.Context, formPath, action string, v url.Values) (string, error) {
	form, err := c.get(ctx, formPath)
	if err != nil {
		return "", err
	}
	m := csrfRe.FindStringSubmatch(form)
	if m == nil {
		return "", fmt.Errorf("%s has no CSRF token", formPath)
	}
	v.Set("csrf", html.UnescapeString(m[1]))
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+action, strings.NewReader(v.Encode()))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return c.do(req)
}

func (c *Client) get(ctx context.Context, path string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		return "", err
	}
	return c.do(req)
}

func (c *Client) do(req *http.Request) (string, error) {
	resp, err := c.hc.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return "", fmt.Errorf("%s %s: %w", req.Method, req.URL.Path, err)
	}
	if resp.StatusCode >= 400 {
		return string(b), fmt.Errorf("%s %s: %s: %s", req.Method, req.URL.Path, resp.Status, pageError(string(b)))
	}
	return string(b), nil
}

// pageError is the error message a page shows, for error reports.
func pageError(page string) string {
	if m := errRe.FindStringSubmatch(page); m != nil {
		return html.UnescapeString(strings.TrimSpace(tagRe.ReplaceAllString(m[1], "")))
	}
	return "(the page shows no error)"
}
