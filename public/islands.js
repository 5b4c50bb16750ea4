// The islands' loader (what it does and why: `IslandScripts` in src/islands.rs). Comments here
// are few on purpose: this file is part of every first visit to a page with islands.
const glue = document.querySelector('link[rel="modulepreload"][data-islands]');
const wasm = document.querySelector('link[rel="preload"][data-islands]');

if (glue && wasm) {
  const client = await import(glue.href);
  await client.default({ module_or_path: wasm.href });
  client.hydrate();

  const parents = [];
  let missing = 0;
  const visit = async (element) => {
    const tag = element.localName;
    if (tag === 'leptos-island') {
      const island = client[element.dataset.component];
      if (island) {
        parents.at(-1)?.();
        await island(element);
      } else {
        missing += 1;
        console.error(`No island called ${element.dataset.component}: client and server from different builds?`);
      }
    } else if (tag === 'leptos-children') {
      parents.push(element.$$on_hydrate);
      for (const child of element.children) await visit(child);
      parents.pop();
      return;
    }
    for (const child of element.children) await visit(child);
  };
  await visit(document.body);
  if (missing === 0) document.documentElement.setAttribute('data-hydrated', 'true');
}
