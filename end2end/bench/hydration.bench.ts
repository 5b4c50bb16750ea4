// Time from navigation start to interactive, median of 10 fresh page loads, for /login, / and
// /frogs. A page that loads the wasm client (its islands, or the whole page in a build that
// hydrates everything, such as the one before islands) is interactive once it is marked
// hydrated (`data-hydrated`: islands.js sets it once every island hydrated, the build before
// islands from an effect once the page had; the croak buttons work then); a page
// that does not is plain HTML whose one script (the forms' pending state, deferred) has run at
// DOMContentLoaded.
import { test, expect, type Page } from '@playwright/test';
import { USER, signIn } from '../tests/support';

/** Whether the page loads the wasm client: it preloads the `.wasm` (both builds do). */
async function loadsClient(page: Page): Promise<boolean> {
  return (await page.locator('link[rel="preload"][href$=".wasm"]').count()) > 0;
}

async function timeToInteractive(page: Page, path: string): Promise<number> {
  // The moment the mark appears, taken in the page: reading the clock after Playwright's
  // `expect` saw the mark would add its polling interval (100 ms, then 250 ms...) to the figure.
  await page.addInitScript(() => {
    new MutationObserver((_, observer) => {
      if (document.documentElement?.hasAttribute('data-hydrated')) {
        (window as unknown as { hydratedAt: number }).hydratedAt = performance.now();
        observer.disconnect();
      }
    }).observe(document, { attributes: true, subtree: true, attributeFilter: ['data-hydrated'] });
  });
  await page.goto(path);
  if (!(await loadsClient(page))) {
    return page.evaluate(
      () => (performance.getEntriesByType('navigation')[0] as PerformanceNavigationTiming).domContentLoadedEventEnd,
    );
  }
  await expect(page.locator('html')).toHaveAttribute('data-hydrated', 'true');
  // performance.now() counts from the navigation's start.
  const at = await page.evaluate(() => (window as unknown as { hydratedAt?: number }).hydratedAt);
  expect(typeof at, 'the moment the page was marked hydrated').toBe('number');
  return at as number;
}

function median(xs: number[]) {
  const s = [...xs].sort((a, b) => a - b);
  return (s[4] + s[5]) / 2;
}

for (const path of ['/login', '/', '/frogs']) {
  test(`navigation to interactive: ${path}`, async ({ browser }) => {
    const times: number[] = [];
    const context = await browser.newContext();
    if (path === '/frogs') await signIn(await context.newPage(), USER);
    for (let i = 0; i < 10; i++) {
      const page = await context.newPage();
      times.push(await timeToInteractive(page, path));
      await page.close();
    }
    console.log(`${path}: median ${median(times).toFixed(0)} ms to interactive (runs: ${times.map((t) => t.toFixed(0)).join(', ')})`);
    await context.close();
  });
}
