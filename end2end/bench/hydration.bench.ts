// Time from navigation start to hydrated (the page's `data-hydrated` mark, set by an effect once
// the wasm client has taken over), median of 10 fresh page loads, for /login and /frogs.
import { test, expect, type Page } from '@playwright/test';
import { USER, signIn } from '../tests/support';

async function timeToHydrated(page: Page, path: string): Promise<number> {
  await page.goto(path);
  await expect(page.locator('html')).toHaveAttribute('data-hydrated', 'true');
  // performance.now() counts from the navigation's start.
  return page.evaluate(() => performance.now());
}

function median(xs: number[]) {
  const s = [...xs].sort((a, b) => a - b);
  return (s[4] + s[5]) / 2;
}

for (const path of ['/login', '/frogs']) {
  test(`navigation to hydrated: ${path}`, async ({ browser }) => {
    const times: number[] = [];
    const context = await browser.newContext();
    if (path === '/frogs') await signIn(await context.newPage(), USER);
    for (let i = 0; i < 10; i++) {
      const page = await context.newPage();
      times.push(await timeToHydrated(page, path));
      await page.close();
    }
    console.log(`${path}: median ${median(times).toFixed(0)} ms to hydrated (runs: ${times.map((t) => t.toFixed(0)).join(', ')})`);
    await context.close();
  });
}
